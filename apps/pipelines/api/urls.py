from django.urls import path
from rest_framework.routers import SimpleRouter

from . import lineage, views

router = SimpleRouter()
router.register("pipelines", views.PipelineViewSet, basename="pipeline")
router.register("runs", views.RunViewSet, basename="run")
router.register("lineage", lineage.LineageViewSet, basename="lineage")

urlpatterns = [
    *router.urls,
    # A file name, not a resource: no trailing slash.
    path(
        "runs/<int:pk>/rejected.csv",
        views.RunViewSet.as_view({"get": "rejected_csv"}),
        name="run-rejected-csv",
    ),
]
