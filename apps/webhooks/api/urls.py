from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("webhooks", views.WebhookViewSet, basename="webhook")
router.register("webhook-deliveries", views.DeliveryViewSet, basename="webhook-delivery")
router.register("pipeline-triggers", views.PipelineTriggerViewSet, basename="pipeline-trigger")
router.register("push-streams", views.PushStreamViewSet, basename="push-stream")

urlpatterns = router.urls
