from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class ConcurrencyPolicy(models.TextChoices):
    SKIP = "skip", "Skip the tick while a run is going"
    QUEUE = "queue", "Queue the run behind the one going"


class Pipeline(models.Model):
    """A graph from sources through transforms to destinations (`definition`, as DESIGN.md shows it).

    Every save of the definition makes an immutable PipelineVersion; runs record the version they ran."""

    workspace = models.ForeignKey("users.Workspace", on_delete=models.CASCADE, related_name="pipelines")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="")
    definition = models.JSONField(default=dict)
    version = models.PositiveIntegerField(default=0, help_text="The latest version number.")

    # Run settings.
    max_attempts = models.PositiveSmallIntegerField(default=3, help_text="Attempts for transient failures.")
    retry_backoff_s = models.PositiveIntegerField(
        default=30, help_text="First retry delay; doubles each time."
    )
    time_limit_s = models.PositiveIntegerField(default=3600, help_text="A run is stopped after this long.")
    chunk_size = models.PositiveIntegerField(default=50_000)

    # Schedule: a cron expression (with its timezone) or an interval, owned as a django-celery-beat entry.
    schedule_cron = models.CharField(max_length=100, blank=True, default="")
    schedule_timezone = models.CharField(max_length=64, default="UTC")
    schedule_interval_s = models.PositiveIntegerField(null=True, blank=True)
    is_paused = models.BooleanField(default=False)
    concurrency_policy = models.CharField(
        max_length=8, choices=ConcurrencyPolicy.choices, default=ConcurrencyPolicy.SKIP
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    depends_on = models.ManyToManyField("self", symmetrical=False, blank=True, related_name="dependents")

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="pipelines_pipeline_name_unique")
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def has_schedule(self) -> bool:
        return bool(self.schedule_cron or self.schedule_interval_s)


class PipelineVersion(models.Model):
    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    definition = models.JSONField()
    message = models.CharField(max_length=500, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pipeline_id", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["pipeline", "version"], name="pipelines_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.pipeline} v{self.version}"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class RunTrigger(models.TextChoices):
    MANUAL = "manual", "Manual"
    SCHEDULE = "schedule", "Schedule"
    DEPENDENCY = "dependency", "Dependency"
    CLI = "cli", "Command line"
    WEBHOOK = "webhook", "Incoming webhook"


class Run(models.Model):
    """One execution of a pipeline version. The row is the truth: a worker claims it by moving it from
    queued to running for its attempt, and every later state change is a conditional update."""

    workspace = models.ForeignKey("users.Workspace", on_delete=models.CASCADE, related_name="+")
    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="runs")
    # RESTRICT, not PROTECT: a version a run used cannot be deleted alone, but deleting the pipeline (or the
    # workspace) takes its versions and runs together.
    pipeline_version = models.ForeignKey(PipelineVersion, on_delete=models.RESTRICT, related_name="runs")
    status = models.CharField(
        max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True
    )
    trigger = models.CharField(max_length=16, choices=RunTrigger.choices, default=RunTrigger.MANUAL)
    options = models.JSONField(default=dict, blank=True, help_text="full_refresh, streams, backfill range")
    scheduled_for = models.DateTimeField(
        null=True, blank=True, help_text="The schedule tick this run is for."
    )
    attempt = models.PositiveSmallIntegerField(default=1)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=255, blank=True, default="")
    error = models.TextField(blank=True, default="")
    error_kind = models.CharField(
        max_length=32, blank=True, default="", help_text="config, transient, internal…"
    )
    rows_read = models.BigIntegerField(default=0)
    rows_written = models.BigIntegerField(default=0)
    rows_rejected = models.BigIntegerField(default=0)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        # Newest first by id: ids follow creation, and the primary key index serves the sort.
        ordering = ["-id"]
        constraints = [
            # One schedule tick makes one run, however many beat processes fire it.
            models.UniqueConstraint(
                fields=["pipeline", "scheduled_for"],
                condition=Q(scheduled_for__isnull=False),
                name="pipelines_run_one_per_tick",
            )
        ]
        indexes = [
            models.Index(fields=["workspace", "-queued_at"]),
            models.Index(fields=["pipeline", "-id"]),
            models.Index(fields=["status", "heartbeat_at"]),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} of {self.pipeline_id} ({self.status})"

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class NodeRun(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="node_runs")
    node_id = models.CharField(max_length=100)
    kind = models.CharField(max_length=16)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    rows_in = models.BigIntegerField(default=0)
    rows_out = models.BigIntegerField(default=0)
    rows_rejected = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(default=0.0)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["run_id", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "node_id"], name="pipelines_noderun_unique")]

    def __str__(self) -> str:
        return f"{self.node_id} of run {self.run_id}"


class LogLevel(models.TextChoices):
    DEBUG = "debug", "Debug"
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"


class RunLog(models.Model):
    """A run's log line, stored as a row so the API can page and tail it (`?after=<id>`)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="logs")
    at = models.DateTimeField(auto_now_add=True)
    level = models.CharField(max_length=8, choices=LogLevel.choices, default=LogLevel.INFO)
    node_id = models.CharField(max_length=100, blank=True, default="")
    message = models.TextField()
    context = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["run_id", "id"]
        indexes = [models.Index(fields=["run", "id"])]

    def __str__(self) -> str:
        return f"[{self.level}] {self.message[:60]}"


class StreamState(models.Model):
    """The incremental state of one source node of a pipeline, committed only after every destination the
    source feeds has committed the rows read up to it."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="stream_states")
    node_id = models.CharField(max_length=100)
    stream = models.CharField(max_length=255)
    state = models.JSONField(default=dict)
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pipeline_id", "node_id"]
        constraints = [
            models.UniqueConstraint(fields=["pipeline", "node_id"], name="pipelines_streamstate_unique")
        ]

    def __str__(self) -> str:
        return f"{self.node_id}: {self.state}"


class RejectedRecord(models.Model):
    """A row a source or a step refused, kept with its reason (the run's quarantine), never dropped."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="rejected")
    node_id = models.CharField(max_length=100)
    line = models.BigIntegerField(null=True, blank=True)
    row = models.BigIntegerField(null=True, blank=True)
    reason = models.TextField()
    raw = models.JSONField(default=dict)
    source = models.CharField(max_length=500, blank=True, default="")
    rule = models.CharField(
        max_length=100, blank=True, default="", help_text="The validation rule's id; blank for bad input."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "id"]
        indexes = [models.Index(fields=["run", "node_id"])]

    def __str__(self) -> str:
        return f"{self.node_id}: {self.reason[:60]}"


# Quality reports and profiles live here beside RejectedRecord rather than in apps/transformations: they are
# records of one run (deleted with it, read through the same workspace-scoped run selector), while the
# transformations app stays a library of pure functions that knows nothing of runs.


class QualityStatus(models.TextChoices):
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed the run"
    REJECTED = "rejected", "Rows rejected"
    WARNED = "warned", "Warned"


class QualityResult(models.Model):
    """One validation rule of one node, evaluated over one run: the rows it checked, passed and failed."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="quality_results")
    node_id = models.CharField(max_length=100)
    rule_id = models.CharField(max_length=100)
    rule_type = models.CharField(max_length=32)
    action = models.CharField(max_length=8)
    columns = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=QualityStatus.choices)
    checked = models.BigIntegerField(default=0)
    passed = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    warned = models.BigIntegerField(default=0)
    observed = models.JSONField(
        null=True, blank=True, help_text="row_count: the count; freshness: the latest."
    )
    sample = models.JSONField(default=list, blank=True, help_text="A few failing values.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "node_id", "rule_id"], name="pipelines_quality_unique")
        ]

    def __str__(self) -> str:
        return f"{self.node_id}.{self.rule_id}: {self.status}"


class NodeProfile(models.Model):
    """The profile of one node's output in one run (see apps/transformations/profiling.py)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="profiles")
    node_id = models.CharField(max_length=100)
    rows = models.BigIntegerField(default=0, help_text="Rows profiled.")
    complete = models.BooleanField(default=True, help_text="False when the row cap cut the profile short.")
    row_cap = models.BigIntegerField(null=True, blank=True)
    columns = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "node_id"], name="pipelines_profile_unique")]

    def __str__(self) -> str:
        return f"profile of {self.node_id} in run {self.run_id}"
