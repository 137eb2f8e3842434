from rest_framework.routers import SimpleRouter

from . import tables, uploads, views

router = SimpleRouter()
router.register("connector-types", views.ConnectorTypeViewSet, basename="connector-type")
router.register("connectors", views.ConnectorViewSet, basename="connector")
router.register("uploads", uploads.UploadViewSet, basename="upload")
router.register(r"connectors/(?P<connector_pk>\d+)/tables", tables.ConnectorTableViewSet, "connector-table")

urlpatterns = router.urls
