from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class UsersConfig(AppConfig):
    name = "apps.users"
    label = "users"
    verbose_name = "Users and workspaces"


class OtpAdminConfig(admin_apps.AdminConfig):
    """Django's admin with `admin.site` being the site that asks for a second factor, so every app's
    `@admin.register` and the `admin:` URL names stay as they are. Named in INSTALLED_APPS in place of
    django.contrib.admin."""

    default = False
    default_site = "apps.users.admin_site.OtpAdminSite"
