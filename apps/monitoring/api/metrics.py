"""`/api/v1/metrics/...` (run time series, aggregates, system series) and `/api/v1/health/`."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from apps.monitoring import health, metrics
from apps.users.selectors import workspace_ids_for_user


class MetricsQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text="Inclusive; default `until` - 24 h.")
    until = serializers.DateTimeField(required=False, help_text="Exclusive; default now.")
    bucket = serializers.ChoiceField(choices=metrics.BUCKETS, default="hour")
    workspace = serializers.IntegerField(required=False)
    pipeline = serializers.IntegerField(required=False)


class SummaryQuerySerializer(MetricsQuerySerializer):
    group_by = serializers.ChoiceField(choices=["pipeline", "workspace"], default="pipeline")


class SystemQuerySerializer(MetricsQuerySerializer):
    name = serializers.ChoiceField(
        choices=["queue_depth", "active_workers", "runs_running", "runs_queued"], default="queue_depth"
    )
    bucket = serializers.ChoiceField(choices=metrics.BUCKETS, default="minute")


class RunStatsSerializer(serializers.Serializer):
    runs = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True, help_text="succeeded / (succeeded + failed)")
    rows = serializers.IntegerField(help_text="Rows written by the runs.")
    duration_p50_s = serializers.FloatField(allow_null=True)
    duration_p95_s = serializers.FloatField(allow_null=True)


class RunSeriesPointSerializer(RunStatsSerializer):
    bucket = serializers.DateTimeField()


class RunSummaryRowSerializer(RunStatsSerializer):
    workspace = serializers.IntegerField()
    pipeline = serializers.IntegerField(allow_null=True)


class RunSeriesSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    bucket = serializers.CharField()
    points = RunSeriesPointSerializer(many=True)


class RunSummarySerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    group_by = serializers.CharField()
    rows = RunSummaryRowSerializer(many=True)


class SystemPointSerializer(serializers.Serializer):
    bucket = serializers.DateTimeField()
    labels = serializers.DictField()
    avg = serializers.FloatField()
    max = serializers.FloatField()


class SystemSeriesSerializer(serializers.Serializer):
    name = serializers.CharField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    bucket = serializers.CharField()
    points = SystemPointSerializer(many=True)


class MetricsViewSet(viewsets.GenericViewSet):
    """Run metrics of the workspaces the caller can see (`?workspace=` / `?pipeline=` narrow; another
    workspace's id is a 404), and the platform's system samples."""

    permission_classes = [IsAuthenticated]
    serializer_class = RunSeriesSerializer
    # `?workspace=` or `?pipeline=` naming one the caller cannot see.
    error_statuses = ("404",)

    def _query(self, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
        # A plain dict, not the QueryDict: DRF reads an empty form value (`?bucket=`) as "not given" and
        # would take the default instead of refusing it.
        query = serializer_class(data=self.request.query_params.dict())
        query.is_valid(raise_exception=True)
        values = dict(query.validated_data)
        try:
            values["window"] = metrics.window_from(
                since=values.get("since"), until=values.get("until"), bucket=values["bucket"]
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        visible = workspace_ids_for_user(user=self.request.user)
        if "workspace" in values:
            if values["workspace"] not in visible:
                raise Http404("No such workspace.")
            visible = [values["workspace"]]
        pipeline_id = values.get("pipeline")
        if pipeline_id is not None:
            Pipeline = apps.get_model("pipelines", "Pipeline")
            workspace_id = (
                Pipeline.objects.filter(pk=pipeline_id, workspace_id__in=visible)
                .values_list("workspace_id", flat=True)
                .first()
            )
            if workspace_id is None:
                raise Http404("No such pipeline.")
            visible = [workspace_id]
        values["workspace_ids"] = visible
        return values

    @extend_schema(parameters=[MetricsQuerySerializer], responses={200: RunSeriesSerializer})
    @action(detail=False, methods=["get"])
    def runs(self, request: Request) -> Response:
        """Runs per bucket: counts by status, success rate, rows written, p50/p95 duration."""
        q = self._query(MetricsQuerySerializer)
        points = metrics.run_series(
            workspace_ids=q["workspace_ids"],
            pipeline_id=q.get("pipeline"),
            window=q["window"],
            bucket=q["bucket"],
        )
        body = {
            "since": q["window"].since,
            "until": q["window"].until,
            "bucket": q["bucket"],
            "points": points,
        }
        return Response(RunSeriesSerializer(body).data)

    @extend_schema(parameters=[SummaryQuerySerializer], responses={200: RunSummarySerializer})
    @action(detail=False, methods=["get"])
    def summary(self, request: Request) -> Response:
        """The same aggregates over the whole range, per pipeline or per workspace."""
        q = self._query(SummaryQuerySerializer)
        rows = metrics.run_summary(
            workspace_ids=q["workspace_ids"],
            pipeline_id=q.get("pipeline"),
            window=q["window"],
            group_by=q["group_by"],
        )
        body = {
            "since": q["window"].since,
            "until": q["window"].until,
            "group_by": q["group_by"],
            "rows": rows,
        }
        return Response(RunSummarySerializer(body).data)

    @extend_schema(parameters=[SystemQuerySerializer], responses={200: SystemSeriesSerializer})
    @action(detail=False, methods=["get"])
    def system(self, request: Request) -> Response:
        """Platform samples (queue depth per queue, active workers, runs running/queued), for operators
        (staff) only: they are the same for every workspace, so they tell one tenant how busy the others
        are."""
        if not request.user.is_staff:
            raise exceptions.PermissionDenied("Platform metrics are for operators (staff users).")
        q = self._query(SystemQuerySerializer)
        if not q["workspace_ids"]:
            raise Http404("No workspace.")
        points = metrics.system_series(name=q["name"], window=q["window"], bucket=q["bucket"])
        body = {
            "name": q["name"],
            "since": q["window"].since,
            "until": q["window"].until,
            "bucket": q["bucket"],
            "points": points,
        }
        return Response(SystemSeriesSerializer(body).data)


class HealthComponentSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    detail = serializers.CharField()
    ms = serializers.FloatField()


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded"])
    checked_at = serializers.DateTimeField()
    components = serializers.DictField(
        child=HealthComponentSerializer(),
        help_text="database, redis, workers, queues, beat, disk; some add figures (count, lengths, age_s…).",
    )


class HealthViewSet(viewsets.ViewSet):
    """The monitoring screen's health panel, for operators (staff) only: it names no workspace's data and
    no configuration (no hosts, no paths), but worker counts and queue lengths are the whole platform's."""

    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: HealthSerializer})
    def list(self, request: Request) -> Response:
        report = health.health_report()
        # The components carry extra figures the serializer does not list; send them as they are.
        report["checked_at"] = report["checked_at"].isoformat().replace("+00:00", "Z")
        return Response(report)
