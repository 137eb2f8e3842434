"""`GET /api/v1/connectors/{id}/profile/?stream=…&limit=…`: a stream's first rows profiled without a run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from apps.connectors.services import connector_create

pytestmark = pytest.mark.django_db

ROWS = 2_500


@pytest.fixture
def measures(personas, import_dir):
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "id": np.arange(ROWS),
            "delay": rng.normal(20, 30, ROWS).round(1),
            "carrier": rng.choice(["UA", "AA", "DL"], ROWS),
        }
    )
    frame.loc[frame.index % 10 == 3, "delay"] = np.nan  # 250 nulls
    frame.to_csv(import_dir / "measures.csv", index=False)
    connector = connector_create(
        workspace=personas.workspace,
        user=personas.owner,
        name="measures",
        connector_type="csv_file",
        # Small batches: the profile is built across many of them, and the limit cuts one in the middle.
        config={"path": "measures.csv", "chunk_size": 300},
    )
    return connector, frame


def test_viewer_profiles_a_stream_across_batches(personas, client_for, measures):
    connector, frame = measures
    response = client_for(personas.viewer).get(
        f"/api/v1/connectors/{connector.id}/profile/", {"stream": "measures"}
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert {k: body[k] for k in ("connector", "stream", "limit", "rows", "rejected")} == {
        "connector": connector.id,
        "stream": "measures",
        "limit": 10_000,
        "rows": ROWS,
        "rejected": 0,
    }
    columns = {c["name"]: c for c in body["columns"]}
    assert list(columns) == ["id", "delay", "carrier"]
    delay = columns["delay"]
    assert (delay["rows"], delay["nulls"], delay["null_share"]) == (ROWS, 250, 0.1)
    assert delay["min"] == frame["delay"].min() and delay["max"] == frame["delay"].max()
    assert delay["mean"] == pytest.approx(frame["delay"].mean())
    assert delay["stddev"] == pytest.approx(frame["delay"].std())
    histogram = delay["histogram"]
    assert len(histogram["edges"]) == len(histogram["counts"]) + 1
    assert sum(histogram["counts"]) == ROWS - 250
    expected, _ = np.histogram(frame["delay"].dropna(), bins=histogram["edges"])
    assert histogram["counts"] == expected.tolist()
    carrier = columns["carrier"]
    assert (carrier["distinct"], carrier["nulls"], carrier.get("histogram")) == (3, 0, None)
    assert sorted(t["value"] for t in carrier["top_values"]) == ["AA", "DL", "UA"]
    assert sum(t["count"] for t in carrier["top_values"]) == ROWS
    assert columns["id"]["distinct"] == ROWS


def test_the_limit_cuts_the_rows_read(personas, client_for, measures):
    connector, frame = measures
    body = (
        client_for(personas.viewer)
        .get(f"/api/v1/connectors/{connector.id}/profile/", {"stream": "measures", "limit": 1000})
        .json()
    )
    assert (body["rows"], body["limit"]) == (1000, 1000)
    delay = next(c for c in body["columns"] if c["name"] == "delay")
    assert delay["nulls"] == 100
    assert delay["mean"] == pytest.approx(frame["delay"].head(1000).mean())
    assert sum(delay["histogram"]["counts"]) == 900


def test_limits_and_streams_are_checked(personas, client_for, measures):
    connector, _ = measures
    client = client_for(personas.viewer)
    url = f"/api/v1/connectors/{connector.id}/profile/"
    too_many = client.get(url, {"stream": "measures", "limit": 100_001})
    assert too_many.status_code == 400
    assert list(too_many.json()["error"]["fields"]) == ["limit"]
    unknown = client.get(url, {"stream": "nope"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["fields"] == {"stream": ["No stream 'nope'; this source has: measures."]}
    assert client.get(url, {}).json()["error"]["fields"] == {"stream": ["This field is required."]}


def test_rejected_rows_are_counted(personas, client_for, import_dir):
    (import_dir / "bad.csv").write_text("id,score\n1,1.5\n2,2.5\n3,x\n4,\n")
    connector = connector_create(
        workspace=personas.workspace,
        user=personas.owner,
        name="bad",
        connector_type="csv_file",
        config={"path": "bad.csv", "column_types": {"score": "number"}},
    )
    body = (
        client_for(personas.viewer)
        .get(f"/api/v1/connectors/{connector.id}/profile/", {"stream": "bad"})
        .json()
    )
    assert (body["rows"], body["rejected"]) == (3, 1)


def test_an_outsider_gets_404_and_nothing_of_the_data(personas, client_for, measures):
    connector, _ = measures
    response = client_for(personas.outsider).get(
        f"/api/v1/connectors/{connector.id}/profile/", {"stream": "measures"}
    )
    assert response.status_code == 404
    assert b"delay" not in response.content
    assert client_for(None).get(
        f"/api/v1/connectors/{connector.id}/profile/", {"stream": "measures"}
    ).status_code in (401, 403)
