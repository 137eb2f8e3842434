from django.apps import AppConfig

from apps.connectors.push_streams import push_stream_reader_register


class WebhooksConfig(AppConfig):
    name = "apps.webhooks"
    label = "webhooks"

    def ready(self) -> None:
        # The `push_stream` connector reads the records this app receives; connectors sits below webhooks,
        # so it is handed the reader instead of importing it.
        from . import selectors

        push_stream_reader_register(selectors.PUSH_STREAM_READER)
