from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from aggregator.api.schema import ERROR_RESPONSE
from aggregator.api.viewsets import WorkspaceScopedModelViewSet, WorkspaceScopedViewSet
from apps.pipelines.selectors import pipeline_get_for_user
from apps.users.selectors import Role, has_role
from apps.webhooks import selectors, services
from apps.webhooks.models import Delivery, DeliveryStatus, PipelineTrigger, PushStream, Webhook

from .serializers import (
    DeliverySerializer,
    PipelineTriggerCreateSerializer,
    PipelineTriggerSerializer,
    PipelineTriggerWithSecretSerializer,
    PushStreamCreateSerializer,
    PushStreamSerializer,
    PushStreamWithSecretsSerializer,
    RotateSecretSerializer,
    WebhookSerializer,
    WebhookWithSecretSerializer,
    WebhookWriteSerializer,
)


@extend_schema(tags=["webhooks"])
class WebhookViewSet(WorkspaceScopedModelViewSet):
    """Outgoing webhooks: events of the workspace POSTed to a URL, signed per Standard Webhooks. The
    signing secret is returned by create and rotate-secret only. Viewers read; editors change."""

    queryset = Webhook.objects.none()
    serializer_class = WebhookSerializer
    action_roles = {"deliveries": Role.VIEWER}

    def scoped_queryset(self) -> QuerySet[Webhook]:
        return selectors.webhook_list_for_user(user=self.request.user)

    @extend_schema(request=WebhookWriteSerializer, responses={201: WebhookWithSecretSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        workspace = self.workspace_for_create(request)
        data = WebhookWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        webhook, secret = services.webhook_create(
            workspace=workspace,
            user=request.user,
            url=values["url"],
            event_types=values.get("event_types"),
            description=values.get("description", ""),
            is_active=values.get("is_active", True),
        )
        body = WebhookWithSecretSerializer(webhook, context={"signing_secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=WebhookWriteSerializer, responses={200: WebhookSerializer})
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        webhook = self.get_object()
        data = WebhookWriteSerializer(data=request.data, partial=kwargs.get("partial", False))
        data.is_valid(raise_exception=True)
        values = data.validated_data
        webhook = services.webhook_update(
            webhook=webhook,
            url=values.get("url"),
            event_types=values.get("event_types"),
            description=values.get("description"),
            is_active=values.get("is_active"),
        )
        return Response(WebhookSerializer(webhook).data)

    @extend_schema(request=WebhookWriteSerializer, responses={200: WebhookSerializer})
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def perform_destroy(self, instance: Webhook) -> None:
        services.webhook_delete(webhook=instance)

    @extend_schema(request=RotateSecretSerializer, responses={200: WebhookWithSecretSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str | None = None) -> Response:
        """A new signing secret, returned this once. For `overlap_seconds` (default a day) deliveries are
        signed with the old secret as well."""
        webhook = self.get_object()
        data = RotateSecretSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        webhook, secret = services.webhook_rotate_secret(
            webhook=webhook, overlap_s=data.validated_data["overlap_seconds"]
        )
        return Response(WebhookWithSecretSerializer(webhook, context={"signing_secret": secret}).data)

    @extend_schema(request=None, responses={202: DeliverySerializer})
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str | None = None) -> Response:
        """Send a `webhook.test` event to this endpoint only."""
        delivery = services.webhook_send_test(webhook=self.get_object())
        delivery = selectors.delivery_list_for_webhook(webhook=delivery.webhook).get(pk=delivery.pk)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=DeliveryStatus.values, required=False)],
        responses={200: DeliverySerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        """This endpoint's deliveries, newest first, each with its attempts; `?status=failed` narrows."""
        webhook = self.get_object()
        queryset = selectors.delivery_list_for_webhook(webhook=webhook)
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in DeliveryStatus.values:
                raise exceptions.ValidationError({"status": [f"One of {', '.join(DeliveryStatus.values)}."]})
            queryset = queryset.filter(status=wanted)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)


@extend_schema(tags=["webhooks"])
class DeliveryViewSet(mixins.RetrieveModelMixin, WorkspaceScopedViewSet):
    """A delivery of an outgoing webhook, with its attempts; `redeliver` sends it again."""

    queryset = Delivery.objects.none()
    serializer_class = DeliverySerializer

    def scoped_queryset(self) -> QuerySet[Delivery]:
        return selectors.delivery_list_for_user(user=self.request.user)

    @extend_schema(request=None, responses={202: DeliverySerializer})
    @action(detail=True, methods=["post"])
    def redeliver(self, request: Request, pk: str | None = None) -> Response:
        """Send the same message (same webhook-id and body) again, with a fresh retry schedule."""
        delivery = services.delivery_redeliver(delivery=self.get_object())
        delivery = selectors.delivery_list_for_webhook(webhook=delivery.webhook).get(pk=delivery.pk)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["webhooks"])
class PipelineTriggerViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    mixins.ListModelMixin,
    WorkspaceScopedViewSet,
):
    """Incoming webhooks that start a run of a pipeline. The signing secret is returned by create only."""

    queryset = PipelineTrigger.objects.none()
    serializer_class = PipelineTriggerSerializer

    def scoped_queryset(self) -> QuerySet[PipelineTrigger]:
        return selectors.trigger_list_for_user(user=self.request.user)

    @extend_schema(
        request=PipelineTriggerCreateSerializer,
        responses={201: PipelineTriggerWithSecretSerializer, 404: ERROR_RESPONSE},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = PipelineTriggerCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # The pipeline's own selector decides visibility (404 for another workspace's pipeline).
        pipeline = pipeline_get_for_user(user=request.user, pipeline_id=data.validated_data["pipeline"])
        if not has_role(user=request.user, workspace_id=pipeline.workspace_id, role=self.write_role):
            raise exceptions.PermissionDenied("Your role in this workspace does not allow this.")
        trigger, secret = services.pipeline_trigger_create(pipeline=pipeline, user=request.user)
        body = PipelineTriggerWithSecretSerializer(trigger, context={"signing_secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: PipelineTrigger) -> None:
        services.pipeline_trigger_delete(trigger=instance)


@extend_schema(tags=["webhooks"])
class PushStreamViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    mixins.ListModelMixin,
    WorkspaceScopedViewSet,
):
    """Streams filled by signed pushes to their URL and read by pipelines through the `push_stream`
    connector type. The signing secret and the read key are returned by create only."""

    queryset = PushStream.objects.none()
    serializer_class = PushStreamSerializer

    def scoped_queryset(self) -> QuerySet[PushStream]:
        return selectors.push_stream_list_for_user(user=self.request.user)

    @extend_schema(request=PushStreamCreateSerializer, responses={201: PushStreamWithSecretsSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        workspace = self.workspace_for_create(request)
        data = PushStreamCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        stream, secret, read_key = services.push_stream_create(
            workspace=workspace, user=request.user, name=data.validated_data["name"]
        )
        body = PushStreamWithSecretsSerializer(
            stream, context={"signing_secret": secret, "read_key": read_key}
        ).data
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: PushStream) -> None:
        services.push_stream_delete(stream=instance)
