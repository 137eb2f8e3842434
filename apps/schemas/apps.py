from django.apps import AppConfig


class SchemasConfig(AppConfig):
    name = "apps.schemas"
    label = "schemas"

    def ready(self) -> None:
        # Registers the `map_fields` step in the transformations' step registry.
        from . import mapping  # noqa: F401
