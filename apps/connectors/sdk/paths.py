"""The path policy of every connector whose config names workspace files: declared here once, so it cannot
drift between plugins.

The security check itself is `apps.connectors.file_areas` and stays there: `FileArea` resolves a path inside
the connector's workspace area (its import area and the shared directories granted to it for reading, its
data area for writing; symlinks followed, a match outside refused), `WorkspaceFilesType.check_config` runs it
when a connector is created or changed, and `config.area.files(...)` / `config.area.output(...)` run it
again each time the files are read or written. This module is what a plugin declares its config with:

- `ImportPath`: the type of a config field naming files to read (a file or a glob), relative to the
  workspace's import area (`uploads/<file>`, `shared/<name>/<file>`, …);
- `DataPath`: the type of a config field naming where a destination writes, relative to the workspace's
  data area;
- `WorkspaceFilesConfig` / `WorkspaceFilesType`: the config base (its `area` is attached by `bind`) and the
  connector type base (`file_area`, `path_field`, `path_is_glob` say which field is checked and how).

Both types refuse, when the config is validated, a path that is absolute, starts with `~`, has a `..` part
or a NUL character (`file_areas.relative_path`); where the path really leads is judged when it is resolved.
A plugin with an extra rule (a suffix) adds its own validator after this one."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from apps.connectors.file_areas import (
    FileArea,
    Kind,
    WorkspaceFilesConfig,
    WorkspaceFilesType,
    relative_path,
)

__all__ = [
    "DataPath",
    "FileArea",
    "ImportPath",
    "Kind",
    "WorkspaceFilesConfig",
    "WorkspaceFilesType",
    "data_path",
    "import_path",
]


def import_path(value: str) -> str:
    """The validator of `ImportPath`: relative to the workspace's files, no `..`, `~`, NUL."""
    return relative_path(value, kind="import")


def data_path(value: str) -> str:
    """The validator of `DataPath`: relative to the workspace's data directory, no `..`, `~`, NUL."""
    return relative_path(value, kind="data")


ImportPath = Annotated[str, AfterValidator(import_path)]
DataPath = Annotated[str, AfterValidator(data_path)]
