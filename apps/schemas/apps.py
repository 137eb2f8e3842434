from django.apps import AppConfig


class SchemasConfig(AppConfig):
    name = "apps.schemas"
    label = "schemas"
