from rest_framework.routers import SimpleRouter

from . import rules, views

router = SimpleRouter()
router.register("step-types", views.StepTypeViewSet, basename="step-type")
router.register("rule-types", rules.RuleTypeViewSet, basename="rule-type")
router.register("expressions", views.ExpressionViewSet, basename="expression")

urlpatterns = router.urls
