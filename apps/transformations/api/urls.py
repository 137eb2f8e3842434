from rest_framework.routers import SimpleRouter

from . import profiles, rules, views

router = SimpleRouter()
router.register("step-types", views.StepTypeViewSet, basename="step-type")
router.register("rule-types", rules.RuleTypeViewSet, basename="rule-type")
router.register("expressions", views.ExpressionViewSet, basename="expression")
# Only `connectors/{id}/profile/`: the connectors app's router serves everything else under connectors/.
router.register("connectors", profiles.ConnectorProfileViewSet, basename="connector-profile")

urlpatterns = router.urls
