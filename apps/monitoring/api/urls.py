from rest_framework.routers import SimpleRouter

from . import alerts, events, metrics

router = SimpleRouter()
router.register("metrics", metrics.MetricsViewSet, basename="metrics")
router.register("health", metrics.HealthViewSet, basename="health")
router.register("alert-rules", alerts.AlertRuleViewSet, basename="alert-rule")
router.register("alerts", alerts.AlertViewSet, basename="alert")
router.register("events", events.EventViewSet, basename="event")
router.register("audit-log", events.AuditLogViewSet, basename="audit-log")

urlpatterns = router.urls
