from django.apps import AppConfig


class TransformationsConfig(AppConfig):
    name = "apps.transformations"
    label = "transformations"

    def ready(self) -> None:
        # Importing the library registers the built-in step types (each class is decorated with
        # `steps.register`). Done here, once the apps are loaded, rather than at the end of steps.py, which
        # the library's modules import.
        from apps.transformations import library  # noqa: F401
