"""Every model of the apps is in the Django admin (the partitioned metric tables aside), and each list page
loads and searches for a superuser."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.test import Client

from apps.users.models import User

APPS = ("users", "connectors", "schemas", "transformations", "pipelines", "monitoring", "webhooks")
# Partitioned time series: served by the metrics API and `manage.py metrics_partitions`. NodeRun and
# DeliveryAttempt are inlines of their run and delivery.
NOT_IN_ADMIN = {
    "monitoring.RunMetric",
    "monitoring.SystemMetric",
    "pipelines.NodeRun",
    "webhooks.DeliveryAttempt",
}


def test_every_model_is_registered():
    missing = [
        m._meta.label
        for m in apps.get_models()
        if m._meta.app_label in APPS and m not in admin.site._registry and m._meta.label not in NOT_IN_ADMIN
    ]
    assert missing == []


@pytest.mark.django_db
def test_every_admin_list_page_loads_and_searches():
    staff = User.objects.create_superuser(email="root@example.com", password="a-long-admin-passphrase")
    client = Client()
    client.force_login(staff)
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in APPS:
            continue
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert client.get(url).status_code == 200, url
        if model_admin.search_fields:
            assert client.get(url, {"q": "x"}).status_code == 200, url
