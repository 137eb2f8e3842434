"""The connector SDK: the one layer every plugin in `apps.connectors.plugins` stands on.

A plugin is a thin adapter (a dialect, a protocol, a file format) over these modules; no plugin imports
another plugin. Each module owns one concern that must not drift between connectors (the file path policy,
identifier quoting, the reserved-column rule, the incremental-cursor policy, the HTTP client).

Files (docs/connectors.md, "Connector SDK / Files"):
- `paths`: the path policy of every connector naming workspace files (`ImportPath`, `DataPath`), over
  `apps.connectors.file_areas`;
- `files`: the inputs of a file source (archive members), its read loop (`FileSource`), `CursorFilter`;
- `records`: records -> Arrow (conversion, inference) and the one list of conversion errors;
- `arrow`: Arrow tables -> a stream's types (text columns, typed columns)."""
