from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("pipelines", views.PipelineViewSet, basename="pipeline")
router.register("runs", views.RunViewSet, basename="run")

urlpatterns = router.urls
