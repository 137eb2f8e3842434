from django.apps import AppConfig


class TransformationsConfig(AppConfig):
    name = "apps.transformations"
    label = "transformations"
