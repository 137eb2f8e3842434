from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("schemas/connectors", views.ConnectorSchemaViewSet, basename="schema-connector")
router.register("schemas/contracts", views.StreamContractViewSet, basename="schema-contract")
router.register("schemas/changes", views.SchemaChangeViewSet, basename="schema-change")

urlpatterns = router.urls
