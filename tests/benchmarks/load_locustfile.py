"""The users of the load benchmark (tests/benchmarks/test_load.py), run by `locust` in its own process: locust
patches the standard library with gevent when it is imported, which must never happen in the pytest process.

Everything comes from the JSON file named by LOAD_CONFIG, which the test writes: the API key, the
pipelines, the rates, and where to write one line per request (`samples`), from which the test computes its
figures (exact percentiles rather than locust's rounded ones, and the run ids started).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant_throughput, events, task
from locust.contrib.fasthttp import ResponseContextManager

CONFIG: dict[str, Any] = json.loads(Path(os.environ["LOAD_CONFIG"]).read_text())
HEADERS = {"Authorization": f"Api-Key {CONFIG['api_key']}"}
# Runs the mixed users may read: those made before the load, and each one the run starter makes.
RUN_IDS: list[int] = list(CONFIG["run_ids"])
_samples = open(CONFIG["samples"], "w", buffering=1 << 16)  # noqa: SIM115


@events.request.add_listener
def _record(
    request_type: str,
    name: str,
    response_time: float,
    exception: BaseException | None,
    start_time: float,
    response: Any = None,
    context: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    sample = {
        "name": name,
        "start": start_time,
        "ms": response_time,
        "status": getattr(response, "status_code", 0) or 0,
        "ok": exception is None,
    }
    if exception is not None:
        sample["error"] = str(exception)[:300]
    sample.update(context or {})
    _samples.write(json.dumps(sample) + "\n")


@events.quit.add_listener
def _close(**_: Any) -> None:
    _samples.close()


def _expect(response: ResponseContextManager, status: int) -> dict[str, Any] | None:
    """A request is a failure unless it answers the one status its route answers on success (and a JSON
    object, but for a 204)."""
    if response.status_code != status:
        body = (response.text or "")[:300] if response.status_code else ""
        error = getattr(response, "error", None) or ""
        response.failure(f"{response.status_code} (expected {status}) {error} {body}".strip())
        return None
    if status == 204:
        response.success()
        return {}
    try:
        parsed = response.json()
    except ValueError as exc:
        response.failure(f"{status} but not JSON: {exc}")
        return None
    if not isinstance(parsed, dict):
        response.failure(f"{status} but not a JSON object")
        return None
    response.success()
    return parsed


class ApiUser(FastHttpUser):
    """A client of the API doing what the web app and scripts do, in proportion: mostly reads, some edits."""

    wait_time = constant_throughput(CONFIG["user_rate"])
    weight = 1

    def on_start(self) -> None:
        self.webhook_id: int | None = None

    def _get(self, path: str, name: str) -> None:
        with self.client.get(path, headers=HEADERS, name=name, catch_response=True) as response:
            _expect(response, 200)

    @task(15)
    def me(self) -> None:
        self._get("/api/v1/me/", "GET me/")

    @task(15)
    def pipelines(self) -> None:
        self._get("/api/v1/pipelines/", "GET pipelines/")

    @task(20)
    def runs(self) -> None:
        self._get("/api/v1/runs/?limit=20", "GET runs/?limit=20")

    @task(25)
    def run_detail(self) -> None:
        self._get(f"/api/v1/runs/{random.choice(RUN_IDS)}/", "GET runs/{id}/")

    @task(10)
    def connectors(self) -> None:
        self._get("/api/v1/connectors/", "GET connectors/")

    @task(15)
    def event_list(self) -> None:
        self._get("/api/v1/events/", "GET events/")

    @task(10)
    def metrics(self) -> None:
        self._get("/api/v1/metrics/runs/", "GET metrics/runs/")

    @task(5)
    def step_types(self) -> None:
        self._get("/api/v1/step-types/", "GET step-types/")

    @task(5)
    def connector_types(self) -> None:
        self._get("/api/v1/connector-types/", "GET connector-types/")

    @task(10)
    def edit_pipeline(self) -> None:
        pipeline = random.choice(CONFIG["pipeline_ids"])
        body = {"description": f"edited under load {random.randrange(1_000_000)}"}
        with self.client.patch(
            f"/api/v1/pipelines/{pipeline}/",
            json=body,
            headers=HEADERS,
            name="PATCH pipelines/{id}/",
            catch_response=True,
        ) as response:
            _expect(response, 200)

    @task(10)
    def webhook(self) -> None:
        # One request a task, so the task rate is the request rate: create on one turn, delete the next.
        if self.webhook_id is None:
            with self.client.post(
                "/api/v1/webhooks/",
                json=CONFIG["webhook"],
                headers=HEADERS,
                name="POST webhooks/",
                catch_response=True,
            ) as response:
                if (body := _expect(response, 201)) is not None:
                    self.webhook_id = int(body["id"])
        else:
            with self.client.delete(
                f"/api/v1/webhooks/{self.webhook_id}/",
                headers=HEADERS,
                name="DELETE webhooks/{id}/",
                catch_response=True,
            ) as response:
                _expect(response, 204)
            self.webhook_id = None

    @task(10)
    def validate(self) -> None:
        with self.client.post(
            "/api/v1/pipelines/validate/",
            json={"definition": CONFIG["definition"]},
            headers=HEADERS,
            name="POST pipelines/validate/",
            catch_response=True,
        ) as response:
            body = _expect(response, 200)
            if body is not None and not body.get("valid"):
                response.failure(f"the document was found invalid: {body.get('errors')}")


class RunStarter(FastHttpUser):
    """Starts runs at a steady rate, taking turns between the pipelines."""

    wait_time = constant_throughput(CONFIG["run_rate"])
    fixed_count = 1

    def on_start(self) -> None:
        self.turn = 0

    @task
    def start_run(self) -> None:
        pipeline = CONFIG["pipeline_ids"][self.turn % len(CONFIG["pipeline_ids"])]
        self.turn += 1
        with self.client.post(
            f"/api/v1/pipelines/{pipeline}/runs/",
            json={},
            headers=HEADERS,
            name="POST pipelines/{id}/runs/",
            catch_response=True,
        ) as response:
            body = _expect(response, 201)
            if body is not None:
                RUN_IDS.append(int(body["id"]))
                # Recorded with the request's sample, so the test knows every run that was started.
                response.request_meta["context"]["run_id"] = int(body["id"])
