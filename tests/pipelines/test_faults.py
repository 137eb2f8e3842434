"""Faults on real processes: a worker SIGKILLed mid-run, a cancel mid-run. The destination ends with exactly
the source's rows, or untouched."""

from __future__ import annotations

import pytest

from apps.pipelines.models import NodeRun, Run, RunLog, RunStatus
from apps.pipelines.services import pipeline_create, run_cancel, run_start, runs_recover_stale

from .worker import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.timeout(300)]

# Big enough that a run lasts a few seconds on this machine, so it can be interrupted mid-stream.
ROWS = 6_000_000


@pytest.fixture
def big_file(import_dir):
    path = import_dir / "big.csv"
    with path.open("w") as out:
        out.write("id,carrier,dep_delay\n")
        for start in range(0, ROWS, 50_000):
            out.write(
                "".join(f"{i},{'UA' if i % 3 else 'AA'},{i % 200}\n" for i in range(start, start + 50_000))
            )
    return path


@pytest.fixture
def big_pipeline(personas, big_file, pg_connector):
    from apps.connectors.services import connector_create

    connector_create(
        workspace=personas.workspace,
        name="big-files",
        connector_type="csv_file",
        config={"path": "big.csv", "chunk_size": 5_000},
        user=None,
    )
    definition = {
        "nodes": [
            {"id": "big", "kind": "source", "connector": "big-files", "stream": "big"},
            {"id": "slow", "kind": "transform", "step": "filter", "config": {"expression": "dep_delay >= 0"}},
            {
                "id": "warehouse",
                "kind": "destination",
                "connector": "warehouse-pg",
                "table": "big",
                "write_mode": "append",
            },
        ],
        "edges": [{"from": "big", "to": "slow"}, {"from": "slow", "to": "warehouse"}],
    }
    return pipeline_create(
        workspace=personas.workspace,
        name="big",
        definition=definition,
        user=None,
        retry_backoff_s=0,
        chunk_size=5_000,
    )


def loaded(conn, schema) -> tuple[int, int]:
    exists = conn.execute("SELECT to_regclass(%s)", [f'"{schema}".big']).fetchone()[0]
    if exists is None:
        return (0, 0)
    return conn.execute(f'SELECT count(*), count(DISTINCT id) FROM "{schema}".big').fetchone()


def test_a_worker_killed_mid_run_is_recovered_with_exactly_the_source_rows(
    big_pipeline, scratch_conn, pg_schema, settings
):
    settings.AGGREGATOR_RUN_HEARTBEAT_TIMEOUT_S = 3
    with Worker() as first:
        run = run_start(pipeline=big_pipeline, user=None)
        assert wait_for(
            lambda: NodeRun.objects.filter(run=run, node_id="warehouse", rows_in__gt=0).exists(), timeout=120
        )
        first.kill()
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.attempt == 1
    assert loaded(scratch_conn, pg_schema) == (0, 0)  # nothing committed by the dead attempt

    assert wait_for(lambda: runs_recover_stale() > 0, timeout=30)
    run.refresh_from_db()
    assert (run.status, run.attempt) == (RunStatus.QUEUED, 2)

    with Worker():
        assert wait_for(
            lambda: Run.objects.get(id=run.id).status in (RunStatus.SUCCEEDED, RunStatus.FAILED), timeout=180
        )
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert loaded(scratch_conn, pg_schema) == (ROWS, ROWS)
    assert run.rows_written == ROWS


def test_cancel_mid_run_drops_staging_and_leaves_the_table_untouched(big_pipeline, scratch_conn, pg_schema):
    scratch_conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{pg_schema}"')
    with Worker():
        run = run_start(pipeline=big_pipeline, user=None)
        assert wait_for(
            lambda: NodeRun.objects.filter(run=run, node_id="warehouse", rows_in__gt=0).exists(), timeout=120
        )
        run_cancel(run=run)
        assert wait_for(lambda: Run.objects.get(id=run.id).status == RunStatus.CANCELLED, timeout=60)
    assert loaded(scratch_conn, pg_schema) == (0, 0)
    staging = scratch_conn.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename <> 'big'", [pg_schema]
    ).fetchone()[0]
    assert staging == 0


@pytest.fixture
def separate_server():
    """A PostgreSQL server of the test's own, so it can be stopped in the middle of a load. Its data lives
    under var/test/ (pytest's tmp_path sits in a 0700 directory the server's system user may not enter)."""
    import secrets
    import shutil

    from django.conf import settings as django_settings

    from aggregator.embedded import EmbeddedPostgres

    data_dir = django_settings.BASE_DIR / "var" / "test" / f"dest-pg-{secrets.token_hex(4)}"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = EmbeddedPostgres(data_dir, settings={"fsync": "off"})
    server.start()
    server.ensure_database("dest")
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


def test_destination_database_stopping_mid_load_never_leaves_the_live_table_empty_or_half_written(
    personas, big_file, separate_server, settings
):
    import threading

    import psycopg

    from apps.connectors.services import connector_create
    from apps.pipelines.executor import run_execute

    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]
    with psycopg.connect(separate_server.url("dest"), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.big (id bigint, carrier text, dep_delay bigint)")
        conn.execute("INSERT INTO public.big SELECT g, 'OLD', 0 FROM generate_series(1, 1000) g")
    connector_create(
        workspace=personas.workspace,
        name="big-files",
        connector_type="csv_file",
        config={"path": "big.csv", "chunk_size": 5_000},
        user=None,
    )
    connector_create(
        workspace=personas.workspace,
        name="fragile-pg",
        connector_type="postgres",
        config={
            "host": "127.0.0.1",
            "port": separate_server.port,
            "database": "dest",
            "user": "postgres",
            "schema": "public",
            "sslmode": "disable",
        },
        user=None,
    )
    pipeline = pipeline_create(
        workspace=personas.workspace,
        name="fragile",
        definition={
            "nodes": [
                {"id": "big", "kind": "source", "connector": "big-files", "stream": "big"},
                {
                    "id": "warehouse",
                    "kind": "destination",
                    "connector": "fragile-pg",
                    "table": "big",
                    "write_mode": "overwrite",
                },
            ],
            "edges": [{"from": "big", "to": "warehouse"}],
        },
        user=None,
        retry_backoff_s=0,
    )
    run = run_start(pipeline=pipeline, user=None)
    outcome: dict[str, str] = {}
    worker = threading.Thread(target=lambda: outcome.update(status=run_execute(run_id=run.id, attempt=1)))
    worker.start()
    assert wait_for(
        lambda: NodeRun.objects.filter(run=run, node_id="warehouse", rows_in__gt=0).exists(),
        timeout=120,
        every=0.05,
    )
    separate_server.stop()
    worker.join(120)
    run.refresh_from_db()
    # A lost connection is transient: the attempt is given back to the queue for a retry.
    assert outcome["status"] == RunStatus.QUEUED, run.error
    assert (run.status, run.attempt, run.error_kind) == (RunStatus.QUEUED, 2, "transient")

    separate_server.start()
    with psycopg.connect(separate_server.url("dest")) as conn:
        assert conn.execute("SELECT count(*), min(carrier), max(carrier) FROM public.big").fetchone() == (
            1000,
            "OLD",
            "OLD",
        )

    status = run_execute(run_id=run.id, attempt=2)
    assert status == RunStatus.SUCCEEDED, "\n".join(
        RunLog.objects.filter(run=run).values_list("message", flat=True)
    )
    with psycopg.connect(separate_server.url("dest")) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM public.big").fetchone() == (ROWS, ROWS)
        leftovers = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'big'"
        )
        assert leftovers.fetchone()[0] == 0
