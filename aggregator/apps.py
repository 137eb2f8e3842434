from django.apps import AppConfig


class AggregatorConfig(AppConfig):
    name = "aggregator"

    def ready(self) -> None:
        from aggregator.api import strings

        strings.install()
