from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import (
    NodeProfile,
    NodeRun,
    Pipeline,
    PipelineVersion,
    QualityResult,
    RejectedRecord,
    Run,
    RunLog,
    StreamState,
)
from .services import pipeline_update, run_start


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "workspace",
        "version",
        "schedule_cron",
        "schedule_interval_s",
        "is_paused",
        "updated_at",
    ]
    list_filter = ["is_paused", "workspace"]
    search_fields = ["name", "description"]
    list_select_related = ["workspace"]
    readonly_fields = ["version", "periodic_task", "created_at", "updated_at", "created_by"]
    filter_horizontal = ["depends_on"]
    actions = ["pause", "resume", "run_now"]

    @admin.action(description="Pause the selected pipelines' schedules")
    def pause(self, request: HttpRequest, queryset: QuerySet[Pipeline]) -> None:
        for pipeline in queryset:
            pipeline_update(pipeline=pipeline, user=request.user, is_paused=True)
        self.message_user(request, f"Paused {queryset.count()} pipeline(s).")

    @admin.action(description="Resume the selected pipelines' schedules")
    def resume(self, request: HttpRequest, queryset: QuerySet[Pipeline]) -> None:
        for pipeline in queryset:
            pipeline_update(pipeline=pipeline, user=request.user, is_paused=False)
        self.message_user(request, f"Resumed {queryset.count()} pipeline(s).")

    @admin.action(description="Run the selected pipelines now")
    def run_now(self, request: HttpRequest, queryset: QuerySet[Pipeline]) -> None:
        for pipeline in queryset:
            run_start(pipeline=pipeline, user=request.user)
        self.message_user(request, f"Queued {queryset.count()} run(s).")


@admin.register(PipelineVersion)
class PipelineVersionAdmin(admin.ModelAdmin):
    list_display = ["pipeline", "version", "message", "created_by", "created_at"]
    search_fields = ["pipeline__name", "message"]
    list_select_related = ["pipeline", "created_by"]
    readonly_fields = ["pipeline", "version", "definition", "message", "created_by", "created_at"]


class NodeRunInline(admin.TabularInline):
    model = NodeRun
    extra = 0
    can_delete = False
    fields = (
        "node_id",
        "kind",
        "status",
        "rows_in",
        "rows_out",
        "rows_rejected",
        "bytes",
        "duration_s",
        "error",
    )
    readonly_fields = fields


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "pipeline",
        "status",
        "trigger",
        "attempt",
        "rows_written",
        "queued_at",
        "finished_at",
    ]
    list_filter = ["status", "trigger", "pipeline"]
    search_fields = ["pipeline__name", "error"]
    list_select_related = ["pipeline"]
    readonly_fields = [f.name for f in Run._meta.fields]
    inlines = [NodeRunInline]
    actions = ["rerun"]

    @admin.action(description="Re-run the selected runs' pipelines")
    def rerun(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        pipelines = {run.pipeline for run in queryset.select_related("pipeline")}
        for pipeline in pipelines:
            run_start(pipeline=pipeline, user=request.user)
        self.message_user(request, f"Queued {len(pipelines)} run(s).", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(RunLog)
class RunLogAdmin(admin.ModelAdmin):
    list_display = ["run", "at", "level", "node_id", "message"]
    list_filter = ["level"]
    search_fields = ["message"]


@admin.register(RejectedRecord)
class RejectedRecordAdmin(admin.ModelAdmin):
    list_display = ["run", "node_id", "line", "reason"]
    search_fields = ["reason"]


@admin.register(StreamState)
class StreamStateAdmin(admin.ModelAdmin):
    list_display = ["pipeline", "node_id", "stream", "updated_at", "run"]
    search_fields = ["pipeline__name", "stream"]
    list_select_related = ["pipeline", "run"]


@admin.register(QualityResult)
class QualityResultAdmin(admin.ModelAdmin):
    list_display = ["run", "node_id", "rule_id", "rule_type", "action", "status", "checked", "failed"]
    list_filter = ["status", "rule_type", "action"]
    search_fields = ["rule_id", "node_id"]


@admin.register(NodeProfile)
class NodeProfileAdmin(admin.ModelAdmin):
    list_display = ["run", "node_id", "rows", "complete", "created_at"]
    search_fields = ["node_id"]
