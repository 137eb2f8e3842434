"""Where a workspace's files are: the one place that turns a path a user wrote into a file on disk.

Every file source (CSV, JSON, Parquet, Excel, SQLite), the uploads and the destinations that write files
(DuckDB, files) resolve paths here and nowhere else, so the rule cannot drift between them:

- **Reading** (`FileArea.for_import`): a config's `path` is relative to the workspace's import area,
  `<AGGREGATOR_IMPORT_DIR>/workspaces/<workspace id>/`. Its `uploads/` holds the workspace's uploads, flat
  (`uploads/<file>`). `shared/<name>/…` names `<AGGREGATOR_IMPORT_DIR>/shared/<name>/`, a directory an
  operator opened to this workspace with `AGGREGATOR_SHARED_IMPORT_DIRS`; nothing else of the import
  directory (its root, other workspaces' areas) can be named.
- **Writing** (`FileArea.for_data`): a DuckDB `database` or a files `directory` is relative to
  `<AGGREGATOR_DATA_DIR>/workspaces/<workspace id>/`.

A path is refused when it is absolute, starts with `~`, has a `..` part or a NUL; every file it matches
(globs `*`, `?`, `[…]`, `**` included) is resolved with its symlinks followed and refused when it lands
outside the root it was looked up in. Errors name the path as the user wrote it, never a server path.

The connector types bind their config to the area of the connector's workspace (`ConnectorType.bind`,
called by `selectors.connector_runtime` for every operation); a config that was never bound has no area
and every operation on it fails (`FileArea` is required, there is no default root).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal, Self

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from pydantic import PrivateAttr

from apps.connectors.base import ConnectorConfig, ConnectorError, ConnectorType

WORKSPACES_DIRNAME = "workspaces"
UPLOADS_DIRNAME = "uploads"
SHARED_DIRNAME = "shared"
GLOB_CHARS = frozenset("*?[")

_SHARED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

Kind = Literal["import", "data"]


def relative_path(value: str, *, kind: Kind = "import") -> str:
    """The config validator of a path a user writes (`path`, `database`, `directory`): relative to the
    workspace's area and without `..`; where it really leads (symlinks) is checked when it is resolved."""
    where = "this workspace's files" if kind == "import" else "this workspace's data directory"
    if "\x00" in value:
        raise ValueError(f"{value!r} contains a NUL character.")
    if Path(value).is_absolute() or value.startswith("~"):
        raise ValueError(f"{value!r} must be relative to {where} (no leading '/' or '~').")
    if ".." in PurePosixPath(value).parts:
        raise ValueError(f"{value!r} must not leave {where} ('..').")
    return value


def shared_grants() -> dict[str, frozenset[int] | None]:
    """`AGGREGATOR_SHARED_IMPORT_DIRS` as {directory name: workspace ids, or None for every workspace}.

    The setting is a string, `name` (every workspace) or `name=3,7` entries separated by `;`, e.g.
    `reference;partners=3,7`, or the same as a mapping in a settings file
    (`{"reference": "*", "partners": [3, 7]}`). A malformed entry stops with ImproperlyConfigured rather
    than granting something nobody meant."""
    raw: Any = getattr(settings, "AGGREGATOR_SHARED_IMPORT_DIRS", "") or ""
    entries: Iterable[tuple[str, Any]]
    if isinstance(raw, str):
        parsed: list[tuple[str, Any]] = []
        for entry in (e.strip() for e in raw.split(";")):
            if entry:
                name, _, ids = entry.partition("=")
                parsed.append((name.strip(), ids.strip() or "*"))
        entries = parsed
    elif isinstance(raw, Mapping):
        entries = raw.items()
    else:
        raise ImproperlyConfigured("AGGREGATOR_SHARED_IMPORT_DIRS must be a string or a mapping.")
    grants: dict[str, frozenset[int] | None] = {}
    for name, ids in entries:
        if not isinstance(name, str) or not _SHARED_NAME.match(name):
            raise ImproperlyConfigured(
                f"AGGREGATOR_SHARED_IMPORT_DIRS: {name!r} is not a directory name "
                "(letters, digits, '.', '_', '-'; not starting with '.')."
            )
        if ids == "*":
            grants[name] = None
            continue
        values = ids.split(",") if isinstance(ids, str) else list(ids)
        try:
            grants[name] = frozenset(int(str(v).strip()) for v in values)
        except ValueError:
            raise ImproperlyConfigured(
                f"AGGREGATOR_SHARED_IMPORT_DIRS: the workspaces of {name!r} must be ids or '*'."
            ) from None
    return grants


@dataclass(frozen=True, slots=True)
class FileArea:
    """The files one workspace may name: `root` (its area) and, for reading, the shared directories granted
    to it (`shared`, by name). Resolution happens at each call, so a symlink changed since the config was
    saved is judged as it is now."""

    workspace_id: int
    kind: Kind
    root: Path
    shared: Mapping[str, Path] = field(default_factory=dict)

    @classmethod
    def for_import(cls, workspace_id: int) -> FileArea:
        base = Path(settings.AGGREGATOR_IMPORT_DIR)
        shared = {
            name: base / SHARED_DIRNAME / name
            for name, ids in sorted(shared_grants().items())
            if ids is None or int(workspace_id) in ids
        }
        return cls(
            workspace_id=int(workspace_id),
            kind="import",
            root=base / WORKSPACES_DIRNAME / str(int(workspace_id)),
            shared=shared,
        )

    @classmethod
    def for_data(cls, workspace_id: int) -> FileArea:
        base = Path(settings.AGGREGATOR_DATA_DIR)
        return cls(
            workspace_id=int(workspace_id),
            kind="data",
            root=base / WORKSPACES_DIRNAME / str(int(workspace_id)),
        )

    # --- what the user sees ------------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """How messages name the area: relative to the operator's directory, never a server path."""
        folder = f"{WORKSPACES_DIRNAME}/{self.workspace_id}/"
        if self.kind == "import":
            return f"this workspace's files (the import directory's {folder})"
        return f"this workspace's data directory (the data directory's {folder})"

    def label(self, path: Path) -> str:
        """A resolved file as the user names it: relative to the area, or `shared/<name>/…`."""
        for name, directory in self.shared.items():
            real = directory.resolve()
            if path.is_relative_to(real):
                return str(PurePosixPath(SHARED_DIRNAME, name, path.relative_to(real)))
        return str(path.relative_to(self.root.resolve()))

    def scrub(self, text: str) -> str:
        """A driver's message without the server's paths (they may say where a file is)."""
        base = Path(settings.AGGREGATOR_IMPORT_DIR if self.kind == "import" else settings.AGGREGATOR_DATA_DIR)
        for path, placeholder in ((self.root.resolve(), "."), (base.resolve(), f"<{self.kind} dir>")):
            text = text.replace(f"{path}/", "" if placeholder == "." else f"{placeholder}/")
            text = text.replace(str(path), placeholder)
        return text

    # --- resolving ---------------------------------------------------------------------------------------

    def _check_syntax(self, value: str, field: str) -> PurePosixPath:
        try:
            relative_path(value, kind=self.kind)
        except ValueError as exc:
            raise ConnectorError(str(exc), field=field) from None
        return PurePosixPath(value)

    def _root_for(self, pattern: str, field: str) -> tuple[Path, str, str]:
        """(directory to look in, the pattern relative to it, how messages name that directory)."""
        parts = self._check_syntax(pattern, field).parts
        if self.kind == "data" or not parts:
            return self.root, pattern, self.where
        if parts[0] == SHARED_DIRNAME:
            if len(parts) < 3 or GLOB_CHARS & set(parts[1]):
                raise ConnectorError(
                    f"{pattern!r}: name a shared directory and a file in it (shared/<name>/<file>); the "
                    "directory's name cannot be a wildcard.",
                    field=field,
                )
            name = parts[1]
            if name not in self.shared:
                raise ConnectorError(
                    f"{pattern!r}: the shared directory {name!r} is not open to this workspace (an "
                    "operator grants it with AGGREGATOR_SHARED_IMPORT_DIRS).",
                    field=field,
                )
            return self.shared[name], str(PurePosixPath(*parts[2:])), f"the shared directory {name!r}"
        if parts[0] == UPLOADS_DIRNAME and len(parts) > 2:
            # Uploads are stored flat. A folder under uploads/ is how paths named another workspace's uploads
            # before each workspace had an area of its own (uploads/<id>/…), so it is refused outright.
            raise ConnectorError(
                f"{pattern!r}: uploads/ has no folders. A workspace reads its own uploads as "
                "uploads/<file>; other workspaces' files cannot be named.",
                field=field,
            )
        return self.root, pattern, self.where

    def files(
        self, pattern: str, *, field: str = "path", glob: bool = True, must_exist: bool = True
    ) -> list[Path]:
        """The regular files `pattern` names (a glob when `glob` and it has `*`, `?` or `[`), resolved, in
        order. A match that resolves outside the directory it was looked up in is refused, whatever else
        matched. No match: an error when `must_exist` (reads), an empty list otherwise (saving a config
        before its files arrive)."""
        directory, relative, where = self._root_for(pattern, field)
        real_root = directory.resolve()
        if glob and GLOB_CHARS & set(relative):
            candidates = sorted(directory.glob(relative)) if directory.is_dir() else []
        else:
            candidates = [directory / relative]
        found: list[Path] = []
        for candidate in candidates:
            real = _resolve(candidate, pattern, field)
            if not real.is_relative_to(real_root):
                raise ConnectorError(f"{pattern!r} leads outside {where}.", field=field)
            if real.is_file():
                found.append(real)
        if not found and must_exist:
            raise ConnectorError(f"No file matches {pattern!r} in {where}.", field=field)
        return found

    def output(self, value: str, *, field: str, make_parent: bool = True) -> Path:
        """Where a destination writes `value` (a file or directory inside the area), symlinks resolved.
        `make_parent` creates the directories up to it, and checks again afterwards: a symlink swapped in
        while they were made must not carry the write out either."""
        self._check_syntax(value, field)
        real_root = self.root.resolve()
        candidate = _resolve(self.root / value, value, field)
        if candidate == real_root or not candidate.is_relative_to(real_root):
            raise ConnectorError(f"{value!r} leads outside {self.where}.", field=field)
        if make_parent:
            candidate.parent.mkdir(parents=True, exist_ok=True)
            if not _resolve(candidate, value, field).is_relative_to(self.root.resolve()):
                raise ConnectorError(f"{value!r} leads outside {self.where}.", field=field)
        return candidate

    def uploads_dir(self) -> Path:
        """The workspace's upload directory, made when missing; it must resolve inside the area."""
        directory = self.root / UPLOADS_DIRNAME
        directory.mkdir(parents=True, exist_ok=True)
        real = directory.resolve()
        if not real.is_relative_to(self.root.resolve()) or real == self.root.resolve():
            raise ConnectorError("The upload directory leads outside this workspace's files.", field="file")
        return real

    def legacy_upload_label(self, label: str) -> str | None:
        """What a read's state called an upload before workspaces had areas (`uploads/<id>/<file>`), so an
        incremental read does not take a moved upload for a new file."""
        parts = PurePosixPath(label).parts
        if self.kind == "import" and len(parts) == 2 and parts[0] == UPLOADS_DIRNAME:
            return f"{UPLOADS_DIRNAME}/{self.workspace_id}/{parts[1]}"
        return None


def _resolve(path: Path, value: str, field: str) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop; the error's text holds the server path
        raise ConnectorError(f"{value!r} cannot be resolved (a symbolic link loop?).", field=field) from None


class WorkspaceFilesConfig(ConnectorConfig):
    """Base of the configs whose paths name workspace files: the area is attached by the type's `bind`
    (a private attribute: never validated from, nor dumped into, the stored config)."""

    _area: FileArea | None = PrivateAttr(default=None)

    def bound_to(self, area: FileArea) -> Self:
        bound = self.model_copy()
        bound._area = area
        return bound

    @property
    def area(self) -> FileArea:
        if self._area is None:
            # Fail closed: a config that never went through bind has no workspace, so no files.
            raise ConnectorError(
                "This connector is not bound to a workspace, so it has no files to use.", field="connector"
            )
        return self._area


class WorkspaceFilesType(ConnectorType):
    """A connector type whose config names workspace files in `path_field`: read from the import area
    (`file_area = "import"`, a glob unless `path_is_glob` is off) or written to the data area
    (`file_area = "data"`). Binding attaches the connector's workspace's area; saving checks the path."""

    file_area: ClassVar[Kind] = "import"
    path_field: ClassVar[str] = "path"
    path_is_glob: ClassVar[bool] = True

    def bind(self, config: Any, *, workspace_id: int) -> Any:
        if self.file_area == "import":
            return config.bound_to(FileArea.for_import(workspace_id))
        return config.bound_to(FileArea.for_data(workspace_id))

    def check_config(self, config: Any, *, workspace_id: int) -> None:
        area = self.bind(config, workspace_id=workspace_id).area
        value = getattr(config, self.path_field)
        if self.file_area == "import":
            area.files(value, field=self.path_field, glob=self.path_is_glob, must_exist=False)
        else:
            area.output(value, field=self.path_field, make_parent=False)


def workspace_import_dir(workspace_id: int) -> Path:
    """The directory an operator puts a workspace's files in (made when missing)."""
    root = FileArea.for_import(workspace_id).root
    root.mkdir(parents=True, exist_ok=True)
    return root
