from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from aggregator.api.filters import UtcDateTimeFilter
from aggregator.api.viewsets import WorkspaceScopedModelViewSet, WorkspaceScopedViewSet
from apps.pipelines import selectors, services
from apps.pipelines.models import Pipeline, RejectedRecord, Run, RunStatus
from apps.users.selectors import Role

from .serializers import (
    NodeProfileSerializer,
    PipelinePreviewInputSerializer,
    PipelinePreviewOutputSerializer,
    PipelineSerializer,
    PipelineVersionSerializer,
    PipelineWriteSerializer,
    PreviewDocumentInputSerializer,
    QualityReportSerializer,
    RejectedRecordSerializer,
    RunDetailSerializer,
    RunLogSerializer,
    RunSerializer,
    RunStartSerializer,
    SampleInputSerializer,
    SampleOutputSerializer,
    ValidateDocumentInputSerializer,
    ValidateInputSerializer,
    ValidateOutputSerializer,
    VersionDiffSerializer,
)


def _validate(*, workspace_id: int, definition: Any) -> Response:
    """The body of both validate routes: a saved pipeline's and an unsaved document's."""
    return Response(services.pipeline_check(workspace_id=workspace_id, definition=definition).to_dict())


def _preview(*, workspace_id: int, definition: Any, node: str, limit: int) -> Response:
    """The body of both preview routes. The document need only be sound at `node` and above it.
    Connectors resolve in `workspace_id` only, so a document naming another workspace's connector is
    refused at that node before anything is read."""
    from apps.pipelines.preview import pipeline_preview

    plan = services.pipeline_plan_upstream(workspace_id=workspace_id, definition=definition, node_id=node)
    return Response(pipeline_preview(plan=plan, node_id=node, limit=limit))


def _write_kwargs(data: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v for k, v in data.items() if k not in {"workspace", "depends_on", "message", "name", "definition"}
    }


@extend_schema(tags=["pipelines"])
class PipelineViewSet(WorkspaceScopedModelViewSet):
    """Pipelines: a graph document (`definition`) plus run settings and an optional schedule. Every change
    of the document makes a new immutable version. Viewers read and validate; editors change and run."""

    queryset = Pipeline.objects.none()
    serializer_class = PipelineSerializer
    action_roles = {"validate": Role.VIEWER, "versions": Role.VIEWER, "version_diff": Role.VIEWER}
    action_roles |= {"preview": Role.VIEWER, "lineage": Role.VIEWER}
    # Unsaved documents: the workspace in the body is checked for the viewer role (workspace_for_create).
    action_roles |= {"validate_document": Role.VIEWER, "preview_document": Role.VIEWER}

    def scoped_queryset(self) -> QuerySet[Pipeline]:
        return selectors.pipeline_list_for_user(user=self.request.user)

    def _depends_on(self, ids: list[int], workspace_id: int) -> list[Pipeline]:
        found = list(
            selectors.pipeline_list_for_user(user=self.request.user).filter(
                id__in=ids, workspace_id=workspace_id
            )
        )
        if len(found) != len(set(ids)):
            raise exceptions.ValidationError({"depends_on": ["Unknown pipeline id(s) for this workspace."]})
        return found

    @extend_schema(request=PipelineWriteSerializer, responses={201: PipelineSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        workspace = self.workspace_for_create(request)
        data = PipelineWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        pipeline = services.pipeline_create(
            workspace=workspace,
            name=values["name"],
            definition=values["definition"],
            user=request.user,
            message=values.get("message", ""),
            **_write_kwargs(values),
        )
        if values.get("depends_on"):
            services.pipeline_update(
                pipeline=pipeline,
                user=request.user,
                depends_on=self._depends_on(values["depends_on"], workspace.id),
            )
        pipeline = selectors.pipeline_get_for_user(user=request.user, pipeline_id=pipeline.id)
        return Response(PipelineSerializer(pipeline).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PipelineWriteSerializer, responses={200: PipelineSerializer})
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        pipeline = self.get_object()
        data = PipelineWriteSerializer(data=request.data, partial=kwargs.get("partial", False))
        data.is_valid(raise_exception=True)
        values = data.validated_data
        services.pipeline_update(
            pipeline=pipeline,
            user=request.user,
            name=values.get("name"),
            definition=values.get("definition"),
            message=values.get("message", ""),
            depends_on=self._depends_on(values["depends_on"], pipeline.workspace_id)
            if "depends_on" in values
            else None,
            **_write_kwargs(values),
        )
        pipeline = selectors.pipeline_get_for_user(user=request.user, pipeline_id=pipeline.id)
        return Response(PipelineSerializer(pipeline).data)

    @extend_schema(request=PipelineWriteSerializer, responses={200: PipelineSerializer})
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def perform_destroy(self, instance: Pipeline) -> None:
        services.pipeline_delete(pipeline=instance)

    @extend_schema(request=ValidateInputSerializer, responses={200: ValidateOutputSerializer})
    @action(detail=True, methods=["post"])
    def validate(self, request: Request, pk: str | None = None) -> Response:
        """Check a document (or the saved one) without saving. Errors are keyed `nodes.<id>.<field>`;
        `schemas` holds the fields at every node that could be planned, even when another node is broken."""
        pipeline = self.get_object()
        data = ValidateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        definition = data.validated_data.get("definition", pipeline.definition)
        return _validate(workspace_id=pipeline.workspace_id, definition=definition)

    @extend_schema(
        request=SampleInputSerializer,
        responses={201: SampleOutputSerializer},
        operation_id="pipelines_sample_create",
        description="Make the sample pipeline (the sample flights CSV → filter → derive → the workspace's "
        "Local warehouse, which is made when missing) and start its first run.",
    )
    @action(detail=False, methods=["post"], url_path="sample", url_name="sample")
    def sample(self, request: Request) -> Response:
        from apps.pipelines.samples import pipeline_sample_create

        SampleInputSerializer(data=request.data).is_valid(raise_exception=True)
        workspace = self.workspace_for_create(request)
        pipeline, run = pipeline_sample_create(workspace=workspace, user=request.user)
        body = {
            "pipeline": PipelineSerializer(
                selectors.pipeline_get_for_user(user=request.user, pipeline_id=pipeline.id)
            ).data,
            "run": RunSerializer(run).data,
        }
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=ValidateDocumentInputSerializer,
        responses={200: ValidateOutputSerializer},
        operation_id="pipelines_validate_document",
    )
    @action(detail=False, methods=["post"], url_path="validate", url_name="validate-document")
    def validate_document(self, request: Request) -> Response:
        """Check a document that is not saved as a pipeline yet, in `workspace` (the caller's only one when
        absent; viewers may). The answer is the same as `pipelines/{id}/validate/`'s."""
        workspace = self.workspace_for_create(request, role=Role.VIEWER)
        data = ValidateDocumentInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return _validate(workspace_id=workspace.id, definition=data.validated_data["definition"])

    @extend_schema(request=PipelinePreviewInputSerializer, responses={200: PipelinePreviewOutputSerializer})
    @action(detail=True, methods=["post"])
    def preview(self, request: Request, pk: str | None = None) -> Response:
        """Run the upstream subgraph of `node` on the first `limit` rows of each source (the saved document
        or an unsaved `definition`) and show the node's input and output rows. Nothing is written."""
        pipeline = self.get_object()
        data = PipelinePreviewInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        return _preview(
            workspace_id=pipeline.workspace_id,
            definition=values.get("definition", pipeline.definition),
            node=values["node"],
            limit=values["limit"],
        )

    @extend_schema(
        request=PreviewDocumentInputSerializer,
        responses={200: PipelinePreviewOutputSerializer},
        operation_id="pipelines_preview_document",
    )
    @action(detail=False, methods=["post"], url_path="preview", url_name="preview-document")
    def preview_document(self, request: Request) -> Response:
        """Preview a node of a document that is not saved as a pipeline yet, in `workspace` (as
        `pipelines/{id}/preview/` does). Nothing is written."""
        workspace = self.workspace_for_create(request, role=Role.VIEWER)
        data = PreviewDocumentInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        return _preview(
            workspace_id=workspace.id,
            definition=values["definition"],
            node=values["node"],
            limit=values["limit"],
        )

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT},
        description=(
            "For each destination node, each column's source columns "
            '(`{"<destination>": {"<column>": [{"node": …, "column": …}]}}`), and under `paths` the nodes '
            "each column passes through."
        ),
    )
    @action(detail=True, methods=["get"])
    def lineage(self, request: Request, pk: str | None = None) -> Response:
        from apps.pipelines.lineage import pipeline_lineage

        pipeline = self.get_object()
        plan = services.pipeline_plan(workspace_id=pipeline.workspace_id, definition=pipeline.definition)
        return Response(pipeline_lineage(plan=plan))

    @extend_schema(responses={200: PipelineVersionSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def versions(self, request: Request, pk: str | None = None) -> Response:
        pipeline = self.get_object()
        page = self.paginate_queryset(selectors.pipeline_versions(pipeline=pipeline))
        return self.get_paginated_response(PipelineVersionSerializer(page, many=True).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("base", int, required=True),
            OpenApiParameter("other", int, required=True),
        ],
        responses={200: VersionDiffSerializer},
    )
    @action(detail=True, methods=["get"], url_path="versions/diff")
    def version_diff(self, request: Request, pk: str | None = None) -> Response:
        """What changed between two versions: nodes added, removed or changed (key by key), edges."""
        pipeline = self.get_object()
        try:
            base, other = int(request.query_params["base"]), int(request.query_params["other"])
        except (KeyError, ValueError):
            raise exceptions.ValidationError(
                {"base": ["`base` and `other` must be version numbers."]}
            ) from None
        versions = {
            v.version: v.definition
            for v in selectors.pipeline_versions(pipeline=pipeline).filter(version__in=[base, other])
        }
        for name, number in (("base", base), ("other", other)):
            if number not in versions:
                raise exceptions.ValidationError({name: [f"No version {number}."]})
        return Response(
            {"base": base, "other": other, **services.definition_diff(versions[base], versions[other])}
        )

    @extend_schema(
        methods=["post"],
        request=RunStartSerializer,
        responses={201: RunSerializer},
        description="Start a run.",
    )
    @extend_schema(
        methods=["get"], responses={200: RunSerializer(many=True)}, description="This pipeline's runs."
    )
    @action(detail=True, methods=["get", "post"])
    def runs(self, request: Request, pk: str | None = None) -> Response:
        pipeline = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(
                selectors.run_list_for_user(user=request.user).filter(pipeline=pipeline)
            )
            return self.get_paginated_response(RunSerializer(page, many=True).data)
        data = RunStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.run_start(pipeline=pipeline, user=request.user, options=dict(data.validated_data))
        run = selectors.run_get_for_user(user=request.user, run_id=run.id)
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: PipelineSerializer})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        pipeline = self.get_object()
        services.pipeline_update(pipeline=pipeline, user=request.user, is_paused=True)
        return Response(
            PipelineSerializer(
                selectors.pipeline_get_for_user(user=request.user, pipeline_id=pipeline.id)
            ).data
        )

    @extend_schema(request=None, responses={200: PipelineSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        pipeline = self.get_object()
        services.pipeline_update(pipeline=pipeline, user=request.user, is_paused=False)
        return Response(
            PipelineSerializer(
                selectors.pipeline_get_for_user(user=request.user, pipeline_id=pipeline.id)
            ).data
        )


class RunFilter(django_filters.FilterSet):
    pipeline = django_filters.NumberFilter(field_name="pipeline_id")
    status = django_filters.MultipleChoiceFilter(choices=RunStatus.choices)
    queued_after = UtcDateTimeFilter(field_name="queued_at", lookup_expr="gte")
    queued_before = UtcDateTimeFilter(field_name="queued_at", lookup_expr="lt")

    class Meta:
        model = Run
        fields = ["pipeline", "status", "queued_after", "queued_before"]


@extend_schema(tags=["runs"])
class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, WorkspaceScopedViewSet):
    """Runs of every pipeline you can see, newest first, with their per-node progress."""

    # The detail actions below that list a run's lines take `filter_backends=[]`: the run filters (status,
    # pipeline, dates) belong to the run list, and the schema would document them on those actions too.

    queryset = Run.objects.none()
    serializer_class = RunSerializer
    filterset_class = RunFilter
    action_roles = {
        "cancel": Role.EDITOR,
        "logs": Role.VIEWER,
        "rejected": Role.VIEWER,
        "rejected_csv": Role.VIEWER,
        "quality": Role.VIEWER,
        "profiles": Role.VIEWER,
    }

    def scoped_queryset(self) -> QuerySet[Run]:
        queryset = selectors.run_list_for_user(user=self.request.user)
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("node_runs")
        return queryset

    def get_serializer_class(self) -> Any:
        return RunDetailSerializer if self.action == "retrieve" else RunSerializer

    @extend_schema(request=None, responses={200: RunSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel: a queued run at once; a running one within a batch (its unfinished writes are dropped)."""
        run = services.run_cancel(run=self.get_object())
        return Response(RunSerializer(run).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("after", int, description="Only lines after this id (for tailing)."),
            OpenApiParameter("level", str, enum=["debug", "info", "warning", "error"]),
        ],
        responses={200: RunLogSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def logs(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_object()
        after = request.query_params.get("after")
        try:
            after_id = int(after) if after else None
        except ValueError:
            raise exceptions.ValidationError({"after": ["Must be a log line id."]}) from None
        page = self.paginate_queryset(
            selectors.run_logs(run=run, after=after_id, level=request.query_params.get("level"))
        )
        return self.get_paginated_response(RunLogSerializer(page, many=True).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("node", str),
            OpenApiParameter("rule", str, description="Only rows this validation rule rejected."),
        ],
        responses={200: RejectedRecordSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def rejected(self, request: Request, pk: str | None = None) -> Response:
        """The run's quarantine: rows a source, step or validation rule refused, with the reason, the rule
        and where they were."""
        run = self.get_object()
        page = self.paginate_queryset(
            selectors.run_rejected(
                run=run, node_id=request.query_params.get("node"), rule=request.query_params.get("rule")
            )
        )
        return self.get_paginated_response(RejectedRecordSerializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("node", str), OpenApiParameter("rule", str)],
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    def rejected_csv(self, request: Request, pk: str | None = None) -> StreamingHttpResponse:
        """The run's quarantine as a CSV download (routed at `runs/{id}/rejected.csv`): node, rule, line,
        row, reason, then one column per raw value. Streamed from a server-side cursor, so memory stays flat
        however many rows were rejected."""
        run = self.get_object()
        node, rule = request.query_params.get("node"), request.query_params.get("rule")
        columns = selectors.run_rejected_columns(run=run, node_id=node, rule=rule)
        records = selectors.run_rejected(run=run, node_id=node, rule=rule)
        response = StreamingHttpResponse(
            rejected_csv_lines(records.iterator(chunk_size=2000), columns), content_type="text/csv"
        )
        response["Content-Disposition"] = f'attachment; filename="run-{run.id}-rejected.csv"'
        return response

    @extend_schema(parameters=[OpenApiParameter("node", str)], responses={200: QualityReportSerializer})
    @action(detail=True, methods=["get"])
    def quality(self, request: Request, pk: str | None = None) -> Response:
        """The run's quality report: every validation rule of every node with the rows it checked, passed,
        failed, rejected and warned, and a sample of failing values."""
        run = self.get_object()
        report = selectors.run_quality_report(run=run, node_id=request.query_params.get("node"))
        return Response(QualityReportSerializer(report).data)

    @extend_schema(
        parameters=[OpenApiParameter("node", str)], responses={200: NodeProfileSerializer(many=True)}
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def profiles(self, request: Request, pk: str | None = None) -> Response:
        """Profiles of the run's node outputs: sources by default (first rows), nodes with `profile: true`."""
        run = self.get_object()
        page = self.paginate_queryset(
            selectors.run_profiles(run=run, node_id=request.query_params.get("node"))
        )
        return self.get_paginated_response(NodeProfileSerializer(page, many=True).data)


class _Echo:
    """csv.writer writes into this and gets the line back, so each row can be yielded as it is made."""

    def write(self, value: str) -> str:
        return value


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def rejected_csv_lines(records: Iterator[RejectedRecord], columns: list[str]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(["node", "rule", "line", "row", "reason", *columns, "raw"])
    for record in records:
        raw = record.raw
        values = [_cell(raw.get(c)) for c in columns] if isinstance(raw, dict) else [""] * len(columns)
        # Raw values that are not an object (a list, a line of text) go whole in the last column.
        other = "" if isinstance(raw, dict) else _cell(raw)
        line = "" if record.line is None else record.line
        row = "" if record.row is None else record.row
        yield writer.writerow([record.node_id, record.rule, line, row, record.reason, *values, other])
