from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "apps.monitoring"
    label = "monitoring"

    def ready(self) -> None:
        # The audit log tracks other apps' models by label, once every app is loaded.
        from . import audit

        audit.register_models()
