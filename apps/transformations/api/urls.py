from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("step-types", views.StepTypeViewSet, basename="step-type")

urlpatterns = router.urls
