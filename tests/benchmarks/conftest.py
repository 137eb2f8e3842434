"""Benchmarks run only when asked for: `make bench` (`pytest tests/benchmarks -m benchmark`). Any other run,
`make test` included, collects and skips them."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "benchmark" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="benchmark: run with `make bench` (pytest -m benchmark)")
    for item in items:
        if item.get_closest_marker("benchmark"):
            item.add_marker(skip)
