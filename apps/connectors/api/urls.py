from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("connector-types", views.ConnectorTypeViewSet, basename="connector-type")
router.register("connectors", views.ConnectorViewSet, basename="connector")

urlpatterns = router.urls
