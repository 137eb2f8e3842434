from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from aggregator.health import healthz, readyz


def _docs(view):  # type: ignore[no-untyped-def]
    # The schema tells an attacker every route: outside development it needs a signed-in user.
    return view if settings.AGGREGATOR_PUBLIC_API_DOCS else login_required(view)


api_v1 = [
    path("", include("apps.users.api.urls")),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", _docs(SpectacularAPIView.as_view()), name="schema"),
    path("api/docs/", _docs(SpectacularSwaggerView.as_view(url_name="schema")), name="api-docs"),
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
]
