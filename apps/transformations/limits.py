"""How much a transform may produce and how long it may take: the bounds that keep one expression, one
step or one preview from taking a whole process's memory.

Read from settings on every use (a handful of attribute lookups), so a test or an operator can change
them without a restart of anything but the process that reads them. The defaults are far above what a
real pipeline needs from one batch and far below what would hurt a worker or the web server.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

DEFAULT_EXPRESSION_MAX_STRING = 1024 * 1024
DEFAULT_STEP_OUTPUT_BYTES = 256 * 1024 * 1024
DEFAULT_STEP_OUTPUT_GROWTH = 16
DEFAULT_STEP_BATCH_SECONDS = 300.0


@dataclass(frozen=True)
class Limits:
    # Bytes (UTF-8) of one text value that `concat` or `replace` may build.
    expression_max_string: int
    # What one step may output from one batch: the larger of a fixed allowance and a multiple of the
    # batch's own bytes, so small batches may grow a lot (explode, a wide join) and big ones proportionally.
    step_output_bytes: int
    step_output_growth: float
    # Wall time of one step on one batch (or at the end of its input, for the steps that hold it).
    step_batch_seconds: float

    def output_budget(self, input_bytes: int) -> int:
        return max(self.step_output_bytes, int(self.step_output_growth * input_bytes))


def current() -> Limits:
    return Limits(
        expression_max_string=int(
            getattr(settings, "AGGREGATOR_EXPRESSION_MAX_STRING", DEFAULT_EXPRESSION_MAX_STRING)
        ),
        step_output_bytes=int(getattr(settings, "AGGREGATOR_STEP_OUTPUT_BYTES", DEFAULT_STEP_OUTPUT_BYTES)),
        step_output_growth=float(
            getattr(settings, "AGGREGATOR_STEP_OUTPUT_GROWTH", DEFAULT_STEP_OUTPUT_GROWTH)
        ),
        step_batch_seconds=float(
            getattr(settings, "AGGREGATOR_STEP_BATCH_SECONDS", DEFAULT_STEP_BATCH_SECONDS)
        ),
    )


def size(n: int | float) -> str:
    """Bytes as people read them: `812 bytes`, `3.4 MiB`."""
    n = float(n)
    if n < 10 * 1024:
        return f"{n:,.0f} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:,.1f} {unit}".replace(".0 ", " ")
    raise AssertionError("unreachable")


BUDGET_SETTINGS = "AGGREGATOR_STEP_OUTPUT_BYTES, AGGREGATOR_STEP_OUTPUT_GROWTH"
