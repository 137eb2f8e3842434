from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from apps.connectors.base import ConnectorKind
from apps.connectors.registry import ConnectorRegistry, UnknownConnectorType, registry


def test_built_in_types_are_registered() -> None:
    assert {"csv_file", "postgres", "postgres_source"} <= {t.slug for t in registry.all()}
    assert registry.get("csv_file").kind == ConnectorKind.SOURCE
    assert registry.get("postgres").kind == ConnectorKind.DESTINATION
    assert registry.get("postgres_source").kind == ConnectorKind.SOURCE
    assert registry.origin("postgres") == "builtin:postgres"


def test_kind_filter_lists_sources_and_destinations_apart() -> None:
    sources = {t.slug for t in registry.all(kind=ConnectorKind.SOURCE)}
    destinations = {t.slug for t in registry.all(kind=ConnectorKind.DESTINATION)}
    assert "csv_file" in sources and "csv_file" not in destinations
    assert "postgres" in destinations and "postgres" not in sources
    assert "postgres_source" in sources and "postgres_source" not in destinations


def test_unknown_slug_raises() -> None:
    with pytest.raises(UnknownConnectorType):
        registry.get("no-such-type")


def _fake_distribution(root: Path, entry_points: str) -> None:
    """A package 'installed' only as metadata: a dist-info directory with entry_points.txt and a module."""
    (root / "acme_connector.py").write_text(
        textwrap.dedent(
            """
            from apps.connectors.base import CheckResult, ConnectorConfig, ConnectorKind, ConnectorType

            class AcmeConfig(ConnectorConfig):
                token: str = ""

            class AcmeSource(ConnectorType):
                slug = "acme_api"
                title = "Acme API"
                kind = ConnectorKind.SOURCE
                config_model = AcmeConfig

                def check(self, config):
                    return CheckResult(ok=True, message="fine")

            class Impostor(ConnectorType):
                slug = "postgres"
                title = "Not the real one"
                kind = ConnectorKind.DESTINATION
                config_model = AcmeConfig
            """
        )
    )
    dist = root / "acme_connector-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-connector\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(entry_points)


def test_a_type_registers_through_entry_point_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_distribution(
        tmp_path,
        "[aggregator.connectors]\n"
        "acme = acme_connector:AcmeSource\n"
        "impostor = acme_connector:Impostor\n"
        "broken = acme_connector_missing:Nothing\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh = ConnectorRegistry()

    acme = fresh.get("acme_api")

    assert acme.title == "Acme API"
    assert fresh.origin("acme_api") == "entry_point:acme_connector:AcmeSource"
    # A package cannot replace a built-in type, and a broken entry point is skipped, not fatal.
    assert fresh.get("postgres").title == "PostgreSQL"
    assert fresh.origin("postgres") == "builtin:postgres"
    sys.modules.pop("acme_connector", None)


def test_config_schema_marks_secrets_write_only() -> None:
    schema = registry.get("postgres").json_schema()
    assert schema["properties"]["password"]["writeOnly"] is True
    assert schema["properties"]["password"]["secret"] is True
    assert schema["properties"]["port"]["default"] == 5432
    assert "schema" in schema["properties"]
    assert registry.get("postgres").secret_fields() == ["password"]
    assert list(schema["properties"])[:4] == ["host", "port", "database", "user"]


def test_a_broken_built_in_plugin_is_skipped_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "demo_plugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "broken.py").write_text("import no_such_module_anywhere\n")
    (package / "good.py").write_text(
        "from apps.connectors.base import ConnectorConfig, ConnectorKind, ConnectorType\n"
        "class Good(ConnectorType):\n"
        "    slug = 'good'\n"
        "    title = 'Good'\n"
        "    kind = ConnectorKind.SOURCE\n"
        "    config_model = ConnectorConfig\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh = ConnectorRegistry(plugin_package="demo_plugins", entry_point_group="aggregator.no_such_group")

    assert [t.slug for t in fresh.all()] == ["good"]
    for name in ("demo_plugins", "demo_plugins.good", "demo_plugins.broken"):
        sys.modules.pop(name, None)


def test_run_check_enforces_the_timeout_and_hides_crashes() -> None:
    import time

    from apps.connectors.base import CheckResult, ConnectorConfig, ConnectorType, run_check

    class Slow(ConnectorType):
        slug = "slow"
        title = "Slow"
        kind = ConnectorKind.SOURCE
        config_model = ConnectorConfig
        check_timeout_s = 0.2

        def check(self, config: object) -> CheckResult:
            time.sleep(2)
            return CheckResult(ok=True, message="too late")

    class Crashing(Slow):
        slug = "crashing"

        def check(self, config: object) -> CheckResult:
            raise KeyError("secret-ish detail")

    started = time.monotonic()
    slow = run_check(Slow(), ConnectorConfig())
    assert time.monotonic() - started < 1.5
    assert (slow.ok, slow.message) == (False, "No answer within 0.2 seconds.")
    crashed = run_check(Crashing(), ConnectorConfig())
    assert (crashed.ok, crashed.message) == (False, "The check failed unexpectedly (KeyError).")
