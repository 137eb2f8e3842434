from rest_framework.routers import SimpleRouter

from . import uploads, views

router = SimpleRouter()
router.register("connector-types", views.ConnectorTypeViewSet, basename="connector-type")
router.register("connectors", views.ConnectorViewSet, basename="connector")
router.register("uploads", uploads.UploadViewSet, basename="upload")

urlpatterns = router.urls
