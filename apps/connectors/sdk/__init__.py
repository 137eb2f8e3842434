"""The connector SDK: the one layer every plugin in `apps.connectors.plugins` stands on.

A plugin is a thin adapter (a dialect, a protocol, a file format) over these modules; no plugin imports
another plugin. Each module owns one concern that must not drift between connectors (the file path policy,
identifier quoting, the reserved-column rule, the incremental-cursor policy, the HTTP client)."""
