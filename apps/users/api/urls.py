from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("workspaces", views.WorkspaceViewSet, basename="workspace")
router.register("api-keys", views.ApiKeyViewSet, basename="api-key")
router.register(r"workspaces/(?P<workspace_pk>\d+)/members", views.MembershipViewSet, basename="member")
router.register(
    r"workspaces/(?P<workspace_pk>\d+)/invitations", views.InvitationViewSet, basename="invitation"
)

urlpatterns = [
    path("auth/token/", views.TokenObtainView.as_view(), name="token-obtain"),
    path("auth/token/refresh/", views.TokenRefreshView.as_view(), name="token-refresh"),
    path("auth/token/logout/", views.TokenBlacklistView.as_view(), name="token-logout"),
    path("auth/login/", views.SessionLoginView.as_view(), name="session-login"),
    path("auth/logout/", views.SessionLogoutView.as_view(), name="session-logout"),
    path("auth/csrf/", views.CsrfView.as_view(), name="csrf"),
    path("auth/password/", views.PasswordChangeView.as_view(), name="password-change"),
    path("auth/password-reset/", views.PasswordResetRequestView.as_view(), name="password-reset"),
    path(
        "auth/password-reset/confirm/",
        views.PasswordResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
    path("auth/mfa/", views.MfaStatusView.as_view(), name="mfa-status"),
    path("auth/mfa/totp/", views.MfaTotpView.as_view(), name="mfa-totp"),
    path("auth/mfa/totp/confirm/", views.MfaTotpConfirmView.as_view(), name="mfa-totp-confirm"),
    path("auth/mfa/recovery-codes/", views.MfaRecoveryCodesView.as_view(), name="mfa-recovery-codes"),
    path("auth/mfa/disable/", views.MfaDisableView.as_view(), name="mfa-disable"),
    path("auth/accept-invitation/", views.AcceptInvitationView.as_view(), name="accept-invitation"),
    path("me/", views.MeView.as_view(), name="me"),
    *router.urls,
]
