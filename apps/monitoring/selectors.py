from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.users.selectors import workspace_ids_for_user

from .models import Event


def event_list_for_user(*, user: Any) -> QuerySet[Event]:
    return Event.objects.filter(workspace_id__in=workspace_ids_for_user(user=user)).order_by("-id")
