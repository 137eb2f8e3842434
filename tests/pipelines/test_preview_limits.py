"""Previews cannot take the web server down: what an expression or a step may build is bounded, and the
preview itself runs in a child process held to AGGREGATOR_PREVIEW_MEMORY_BYTES and
AGGREGATOR_PREVIEW_TIMEOUT_S, answering a 400 at the node when it passes either."""

from __future__ import annotations

import itertools
import resource
import time
from pathlib import Path
from typing import Any

import pytest

from apps.connectors.services import connector_create

pytestmark = pytest.mark.django_db

PREVIEW = "/api/v1/pipelines/preview/"
VALIDATE = "/api/v1/pipelines/validate/"
MiB = 1024 * 1024


def x(n: int) -> str:
    return "'" + "x" * n + "'"


# The expression of the report, which grew the web process to 20.8 GB before the kernel killed it.
REPORTED = f"replace(replace(replace(replace(carrier,'',{x(62)}),'',{x(48)}),'',{x(39)}),'',{x(36)})"


@pytest.fixture
def words(personas: Any, import_dir: Path) -> Any:
    rows = "\n".join(f"{i},xx,UA" for i in range(100))
    (import_dir / "words.csv").write_text(f"id,word,carrier\n{rows}\n")
    (import_dir / "long.csv").write_text(f"id,word,carrier\n1,{'x' * 300_000},UA\n")
    for name in ("words", "long"):
        connector_create(
            workspace=personas.workspace,
            name=f"{name}-files",
            connector_type="csv_file",
            config={"path": f"{name}.csv"},
            user=personas.owner,
        )


def document(*steps: dict[str, Any], source: str = "words") -> dict[str, Any]:
    nodes = [{"id": "src", "kind": "source", "connector": f"{source}-files", "stream": source}, *steps]
    edges = [{"from": a["id"], "to": b["id"]} for a, b in itertools.pairwise(nodes)]
    return {"nodes": nodes, "edges": edges}


def derive(expression: str, node_id: str = "z") -> dict[str, Any]:
    return {
        "id": node_id,
        "kind": "transform",
        "step": "derive",
        "config": {"column": "z", "expression": expression},
    }


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_the_reported_expression_is_a_quick_400_at_its_expression(personas, client_for, words):
    client = client_for(personas.editor)
    before, started = peak_rss(), time.monotonic()
    response = client.post(PREVIEW, {"definition": document(derive(REPORTED)), "node": "z"}, format="json")
    assert time.monotonic() - started < 5
    assert peak_rss() - before < 50 * MiB
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "nodes.z.config.expression": [
            "the text to replace is empty at 1:41, replace(text, 'from', 'to') needs a 'from' to look for"
        ]
    }
    checked = client.post(VALIDATE, {"definition": document(derive(REPORTED))}, format="json").json()
    assert checked["valid"] is False
    assert checked["errors"]["nodes.z.config.expression"][0].startswith("the text to replace is empty")


def test_the_same_amplification_with_a_pattern_is_refused_before_anything_is_read(
    personas, client_for, words
):
    nested = f"replace(replace(replace(replace(carrier,'U',{x(62)}),'x',{x(48)}),'x',{x(39)}),'x',{x(36)})"
    response = client_for(personas.editor).post(
        PREVIEW, {"definition": document(derive(nested)), "node": "z"}, format="json"
    )
    assert response.status_code == 400
    (message,) = response.json()["error"]["fields"]["nodes.z.config.expression"]
    assert message.startswith("'replace' builds a text of up to 4,178,304 bytes from a one-character value")


def test_a_value_that_grows_past_the_limit_in_the_data_is_a_400_at_the_expression(
    personas, client_for, words
):
    response = client_for(personas.editor).post(
        PREVIEW,
        {"definition": document(derive(f"replace(word, 'x', {x(4)})"), source="long"), "node": "z"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "nodes.z.config.expression": [
            "'replace' would build a text of 1,200,000 bytes (row index 0 of the batch), more than the limit "
            "of 1,048,576 bytes for one value at 1:1, the limit is set by AGGREGATOR_EXPRESSION_MAX_STRING"
        ]
    }


def test_a_preview_past_its_memory_is_stopped_in_its_own_process(personas, client_for, words, settings):
    # With the expression limits lifted, the preview really builds 400 MB: its process may have 256 MiB.
    settings.AGGREGATOR_EXPRESSION_MAX_STRING = 10**12
    settings.AGGREGATOR_STEP_OUTPUT_BYTES = 10**12
    settings.AGGREGATOR_PREVIEW_MEMORY_BYTES = 256 * MiB
    grown = f"replace(replace(replace(word, 'x', {x(1000)}), 'x', {x(1000)}), 'x', 'xx')"  # 4 MB a row
    before, started = peak_rss(), time.monotonic()
    response = client_for(personas.editor).post(
        PREVIEW, {"definition": document(derive(grown)), "node": "z", "limit": 100}, format="json"
    )
    assert time.monotonic() - started < 30
    assert response.status_code == 400, response.content
    (message,) = response.json()["error"]["fields"]["nodes.z"]
    assert message.startswith("the preview used more than 256 MiB of memory and was stopped")
    assert message.endswith("(AGGREGATOR_PREVIEW_MEMORY_BYTES)")
    # The request's own process never held that memory.
    assert peak_rss() - before < 64 * MiB


def test_a_preview_past_its_time_is_killed(personas, client_for, words, settings):
    settings.AGGREGATOR_PREVIEW_TIMEOUT_S = 1
    slow = {
        "id": "slow",
        "kind": "transform",
        "step": "sql",
        "config": {"query": "SELECT count(*) AS n FROM input, range(100000000000)", "timeout_s": 600},
    }
    started = time.monotonic()
    response = client_for(personas.editor).post(
        PREVIEW, {"definition": document(slow), "node": "slow"}, format="json"
    )
    assert time.monotonic() - started < 10
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "nodes.slow": ["the preview took longer than 1 s and was stopped (AGGREGATOR_PREVIEW_TIMEOUT_S)"]
    }


def test_a_step_past_its_output_budget_is_a_400_at_the_node(personas, client_for, words, settings):
    settings.AGGREGATOR_STEP_OUTPUT_BYTES = 10_000
    settings.AGGREGATOR_STEP_OUTPUT_GROWTH = 1
    fan_out = {
        "id": "many",
        "kind": "transform",
        "step": "sql",
        "config": {"query": "SELECT i.id, r.range AS k FROM input i, range(1000) r"},
    }
    response = client_for(personas.editor).post(
        PREVIEW, {"definition": document(fan_out), "node": "many"}, format="json"
    )
    assert response.status_code == 400
    (message,) = response.json()["error"]["fields"]["nodes.many.config.query"]
    assert message == (
        "the query's result passed 10,000 bytes for a batch of 2,000 bytes, more than the step's budget for "
        "it (AGGREGATOR_STEP_OUTPUT_BYTES, AGGREGATOR_STEP_OUTPUT_GROWTH)"
    )


def test_a_normal_preview_with_sql_and_expressions_still_works(personas, client_for, words):
    steps = [
        derive("concat(carrier, '-', id)", "tag"),
        {
            "id": "per_carrier",
            "kind": "transform",
            "step": "sql",
            "config": {"query": "SELECT carrier, count(*) AS n, min(z) AS first FROM input GROUP BY carrier"},
        },
    ]
    response = client_for(personas.viewer).post(
        PREVIEW, {"definition": document(*steps), "node": "per_carrier"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["output"] == [{"carrier": "UA", "n": 100, "first": "UA-0"}]
    assert len(body["inputs"]["tag"]) == 100 and body["inputs"]["tag"][5]["z"] == "UA-5"
