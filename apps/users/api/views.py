from __future__ import annotations

import base64
import hashlib
import io
from typing import Any, cast

from django.contrib.auth import authenticate, login, logout, update_session_auth_hash
from django.contrib.auth.signals import user_login_failed
from django.db.models import QuerySet
from django.middleware.csrf import get_token
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import ensure_csrf_cookie
from django_otp import login as otp_login
from django_otp.models import Device
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle
from rest_framework.views import APIView
from rest_framework_simplejwt import views as jwt_views
from rest_framework_simplejwt.tokens import RefreshToken

from aggregator.api.viewsets import WorkspaceScopedModelViewSet, WorkspaceScopedViewSet
from aggregator.clientip import client_ip
from aggregator.logging import get_logger
from apps.users import selectors, services
from apps.users.authentication import MFA_CLAIM
from apps.users.lockout import lockout_message
from apps.users.models import ApiKey, Invitation, Membership, Role, User, Workspace

from .serializers import (
    AcceptInvitationSerializer,
    ApiKeyCreatedSerializer,
    ApiKeyCreateInputSerializer,
    ApiKeySerializer,
    InvitationSerializer,
    LoginInputSerializer,
    MembershipRoleSerializer,
    MembershipSerializer,
    MeSerializer,
    MfaConfirmInputSerializer,
    MfaProofInputSerializer,
    MfaRecoveryCodesSerializer,
    MfaStatusSerializer,
    MfaTotpEnrolmentSerializer,
    OtpInputSerializer,
    PasswordChangeInputSerializer,
    PasswordResetConfirmInputSerializer,
    PasswordResetRequestedSerializer,
    PasswordResetRequestInputSerializer,
    TokenPairSerializer,
    WorkspaceSerializer,
)

logger = get_logger(__name__)


class LockedOut(exceptions.APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "locked_out"

    def __init__(self) -> None:
        super().__init__(detail=lockout_message(), code=self.default_code)


class LoginThrottle(AnonRateThrottle):
    """Sign-ins per client address, read as the lockouts read it (aggregator/clientip.py): a forged
    X-Forwarded-For does not open a fresh bucket."""

    scope = "login"

    def get_ident(self, request: Request) -> str:
        return client_ip(request) or "unknown"


class MfaCodeRequired(exceptions.AuthenticationFailed):
    default_code = "mfa_required"
    default_detail = (
        "This account uses two-factor authentication: send the 6-digit code of its authenticator app "
        "(or a recovery code) as `otp` with the email and password."
    )


def _check_code(request: Request, user: User, otp: str, *, field: str | None = None) -> Device:
    """A second factor, checked like a password: a locked-out (email, address) pair is refused first,
    and each wrong code is a failure towards django-axes' lockout. A six-digit code has a million values,
    so AXES_FAILURE_LIMIT (and django-otp's per-device back-off) is what keeps it from being guessed. A
    wrong code is a 401 `mfa_invalid` at sign-in (`field` None), else a validation error on `field`."""
    from axes.handlers.proxy import AxesProxyHandler

    http_request = request._request
    credentials = {"email": user.email}
    if AxesProxyHandler.is_locked(http_request, credentials):
        raise LockedOut()
    result, device = services.mfa_verify(user=user, otp=otp)
    if device is not None:
        return device
    user_login_failed.send(sender=__name__, credentials=credentials, request=http_request)
    if AxesProxyHandler.is_locked(http_request, credentials):
        raise LockedOut()
    message = services.MFA_CODE_MESSAGES[result]
    if field is None:
        raise exceptions.AuthenticationFailed(message, code="mfa_invalid")
    raise exceptions.ValidationError({field: [message]})


def _second_factor(request: Request, user: User, otp: str | None) -> Device | None:
    """The device that verified this sign-in, or None for an account without two-factor authentication."""
    if not selectors.mfa_enabled(user=user):
        return None
    if not otp:
        raise MfaCodeRequired()
    return _check_code(request, user, otp)


def _authenticate(request: Request, email: str, password: str) -> User:
    """Checks the password through django-axes: a locked-out email + address pair is refused before its
    password is even compared, and each failure counts towards the lockout."""
    from axes.handlers.proxy import AxesProxyHandler

    http_request = request._request
    email = email.strip().lower()
    credentials = {"email": email}
    if AxesProxyHandler.is_locked(http_request, credentials):
        raise LockedOut()
    user = authenticate(http_request, email=email, password=password)
    if user is None:
        if AxesProxyHandler.is_locked(http_request, credentials):
            raise LockedOut()
        raise exceptions.AuthenticationFailed("Email or password is wrong.", code="invalid_credentials")
    if not user.is_active:
        raise exceptions.AuthenticationFailed("This account is disabled.", code="inactive")
    return user


class TokenObtainView(APIView):
    """Exchange email and password for a JWT pair."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []
    throttle_classes = [LoginThrottle]
    # A wrong password or code; the view reads no credential of the request itself.
    error_statuses = ("401",)

    def get_authenticate_header(self, request: Request) -> str:
        # Without one, DRF would turn a wrong password's 401 into a 403.
        return 'Bearer realm="api"'

    @extend_schema(
        request=LoginInputSerializer,
        responses={200: TokenPairSerializer},
        tags=["auth"],
        description=(
            "Email and password, and `otp` for an account with two-factor authentication on (first "
            "answered 401 `mfa_required` without it). Tokens from such a sign-in carry the claim "
            "`mfa: true`, which refreshing keeps."
        ),
    )
    def post(self, request: Request) -> Response:
        data = LoginInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = _authenticate(request, data.validated_data["email"], data.validated_data["password"])
        device = _second_factor(request, user, data.validated_data.get("otp"))
        refresh = RefreshToken.for_user(user)
        if device is not None:
            refresh[MFA_CLAIM] = True
        logger.info("jwt_issued", user_id=user.id, mfa=device is not None)
        return Response({"access": str(refresh.access_token), "refresh": str(refresh)})


class TokenRefreshView(jwt_views.TokenRefreshView):
    # An invalid, expired or blacklisted refresh token in the body.
    error_statuses = ("401",)


class TokenBlacklistView(jwt_views.TokenBlacklistView):
    error_statuses = ("401",)


@method_decorator(ensure_csrf_cookie, name="dispatch")
class CsrfView(APIView):
    """Sets the CSRF cookie and returns the token for the browser's next unsafe request."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(
        responses={200: inline_serializer("CsrfToken", {"csrf_token": serializers.CharField()})},
        tags=["auth"],
    )
    def get(self, request: Request) -> Response:
        return Response({"csrf_token": get_token(request._request)})


class SessionLoginView(APIView):
    """Browser sign-in: sets the HttpOnly session cookie."""

    permission_classes = [AllowAny]
    throttle_classes = [LoginThrottle]

    def get_authenticate_header(self, request: Request) -> str:
        return 'Session realm="api"'

    @extend_schema(
        request=LoginInputSerializer,
        responses={200: MeSerializer},
        tags=["auth"],
        description=(
            "Email and password, and `otp` for an account with two-factor authentication on (first "
            "answered 401 `mfa_required` without it). A user whose role requires two-factor "
            "authentication but has none yet is signed in with `mfa.enrolment_required`: set it up next."
        ),
    )
    def post(self, request: Request) -> Response:
        # DRF exempts anonymous requests from CSRF; a sign-in form must not be (login CSRF).
        SessionAuthentication().enforce_csrf(request)
        data = LoginInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = _authenticate(request, data.validated_data["email"], data.validated_data["password"])
        device = _second_factor(request, user, data.validated_data.get("otp"))
        login(request._request, user, backend="django.contrib.auth.backends.ModelBackend")
        if device is not None:
            # The session is verified: the API's MFA gate and the admin site read this.
            otp_login(request._request, device)
        logger.info("session_login", user_id=user.id, mfa=device is not None)
        return Response(MeSerializer(user, context={"request": request, "auth_type": "session"}).data)


class SessionLogoutView(APIView):
    permission_classes = [AllowAny]
    mfa_gate = "signed_in"

    @extend_schema(request=None, responses={204: None}, tags=["auth"])
    def post(self, request: Request) -> Response:
        logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AcceptInvitationView(APIView):
    """Accept an invitation: as the signed-in user, or by creating an account with a password."""

    permission_classes = [AllowAny]
    throttle_classes = [LoginThrottle]

    @extend_schema(request=AcceptInvitationSerializer, responses={201: MembershipSerializer}, tags=["auth"])
    def post(self, request: Request) -> Response:
        data = AcceptInvitationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = request.user if request.user.is_authenticated else None
        membership = services.invitation_accept(
            token=data.validated_data["token"],
            user=user,
            password=data.validated_data.get("password"),
            full_name=data.validated_data.get("full_name", ""),
        )
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)


def _auth_type(request: Request) -> str:
    if isinstance(request.auth, ApiKey):
        return "api_key"
    if request.auth is not None:
        return "jwt"
    return "session"


class MeView(APIView):
    permission_classes = [IsAuthenticated]
    mfa_gate = "enrolment"

    @extend_schema(responses={200: MeSerializer}, tags=["auth"])
    def get(self, request: Request) -> Response:
        return Response(
            MeSerializer(request.user, context={"request": request, "auth_type": _auth_type(request)}).data
        )

    @extend_schema(request=MeSerializer, responses={200: MeSerializer}, tags=["auth"])
    def patch(self, request: Request) -> Response:
        if isinstance(request.auth, ApiKey):
            raise exceptions.PermissionDenied("API keys cannot change the user's profile.")
        serializer = MeSerializer(request.user, data=request.data, partial=True, context={"request": request})
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data)


def _check_current_password(
    request: Request, user: User, password: str, *, field: str = "current_password"
) -> None:
    """The signed-in user's current password, checked through django-axes like a sign-in: a wrong one counts
    towards the lockout of (email, address), and a locked-out pair is refused before the comparison."""
    from axes.handlers.proxy import AxesProxyHandler

    http_request = request._request
    credentials = {"email": user.email}
    if AxesProxyHandler.is_locked(http_request, credentials):
        raise LockedOut()
    checked = authenticate(http_request, email=user.email, password=password)
    if checked is None or checked.pk != user.pk:
        if AxesProxyHandler.is_locked(http_request, credentials):
            raise LockedOut()
        raise exceptions.ValidationError({field: ["Your current password is not this one."]})


class PasswordChangeView(APIView):
    """The signed-in user changes their password. Their refresh tokens are revoked; the session making the
    request stays signed in, the user's other sessions end. API keys cannot do this."""

    permission_classes = [IsAuthenticated]
    mfa_gate = "enrolment"

    @extend_schema(request=PasswordChangeInputSerializer, responses={204: None}, tags=["auth"])
    def post(self, request: Request) -> Response:
        if isinstance(request.auth, ApiKey):
            raise exceptions.PermissionDenied("API keys cannot change the user's password.")
        data = PasswordChangeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = cast("User", request.user)
        _check_current_password(request, user, data.validated_data["current_password"])
        services.user_password_change(user=user, new_password=data.validated_data["new_password"])
        if _auth_type(request) == "session":
            update_session_auth_hash(request._request, user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MfaView(APIView):
    """The signed-in person's own second factor (session or JWT). API keys cannot change it, and reach
    only the key's workspace anyway. Open to a user who must still set it up (the MFA gate)."""

    permission_classes = [IsAuthenticated]
    mfa_gate = "enrolment"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if isinstance(request.auth, ApiKey):
            raise exceptions.PermissionDenied("API keys cannot change two-factor authentication.")

    def status_body(self) -> dict[str, Any]:
        return dict(MfaStatusSerializer(selectors.mfa_status(user=cast(User, self.request.user))).data)


class MfaStatusView(MfaView):
    @extend_schema(responses={200: MfaStatusSerializer}, tags=["auth"])
    def get(self, request: Request) -> Response:
        return Response(self.status_body())


def _qr_svg(uri: str) -> str:
    import segno

    out = io.BytesIO()
    segno.make(uri, error="m").save(
        out,
        kind="svg",
        scale=5,
        border=2,
        xmldecl=False,
        svgns=True,
        title="QR code of the authenticator key",
    )
    return out.getvalue().decode()


class MfaTotpView(MfaView):
    @extend_schema(
        request=None,
        responses={201: MfaTotpEnrolmentSerializer},
        tags=["auth"],
        description=(
            "Starts setting up an authenticator app: a new key, not in use until confirmed with a code "
            "(`totp/confirm/`). The key is in this answer only; asking again makes a new one. Refused "
            "while two-factor authentication is on."
        ),
    )
    def post(self, request: Request) -> Response:
        device = services.mfa_totp_start(user=cast(User, request.user))
        uri = device.config_url
        body = {
            "secret": base64.b32encode(device.bin_key).decode(),
            "otpauth_uri": uri,
            "qr_svg": _qr_svg(uri),
            "digits": device.digits,
            "period": device.step,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class MfaTotpConfirmView(MfaView):
    throttle_classes = [LoginThrottle]

    @extend_schema(
        request=MfaConfirmInputSerializer,
        responses={200: MfaRecoveryCodesSerializer},
        tags=["auth"],
        description=(
            "Turns two-factor authentication on with a code of the new authenticator; answers the "
            "recovery codes, once. A browser session stays signed in (and counts as verified); other "
            "sessions and tokens of the user must sign in again with a code."
        ),
    )
    def post(self, request: Request) -> Response:
        data = MfaConfirmInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = cast(User, request.user)
        device, codes = services.mfa_totp_confirm(user=user, otp=data.validated_data["otp"])
        if _auth_type(request) == "session":
            otp_login(request._request, device)
        return Response({"recovery_codes": codes, "status": self.status_body()})


def _check_proof(request: Request, user: User, data: dict[str, Any]) -> None:
    if data.get("otp"):
        _check_code(request, user, data["otp"], field="otp")
    else:
        _check_current_password(request, user, data["password"], field="password")


class MfaRecoveryCodesView(MfaView):
    throttle_classes = [LoginThrottle]

    @extend_schema(
        request=MfaProofInputSerializer,
        responses={200: MfaRecoveryCodesSerializer},
        tags=["auth"],
        description=(
            "New recovery codes (answered once); the old ones stop working. Needs a code (or a recovery "
            "code) or the password, each checked like a sign-in: wrong ones count towards the lockout."
        ),
    )
    def post(self, request: Request) -> Response:
        data = MfaProofInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = cast(User, request.user)
        if not selectors.mfa_enabled(user=user):
            raise exceptions.ValidationError("Two-factor authentication is off: there are no recovery codes.")
        _check_proof(request, user, data.validated_data)
        codes = services.mfa_recovery_codes_regenerate(user=user)
        return Response({"recovery_codes": codes, "status": self.status_body()})


class MfaRequiredByPolicy(exceptions.PermissionDenied):
    default_code = "mfa_required_by_policy"
    default_detail = (
        "Your role requires two-factor authentication: it cannot be turned off. To move to another phone, "
        "an operator removes your devices in the admin and you set it up again."
    )


class MfaDisableView(MfaView):
    throttle_classes = [LoginThrottle]

    @extend_schema(
        request=OtpInputSerializer,
        responses={200: MfaStatusSerializer},
        tags=["auth"],
        description=(
            "Turns two-factor authentication off (the authenticator and the recovery codes go) with a code "
            "or a recovery code. 403 `mfa_required_by_policy` when AGGREGATOR_MFA_REQUIRED_FOR covers you."
        ),
    )
    def post(self, request: Request) -> Response:
        data = OtpInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = cast(User, request.user)
        if selectors.mfa_required(user=user):
            raise MfaRequiredByPolicy()
        if not selectors.mfa_enabled(user=user):
            return Response(self.status_body())
        _check_code(request, user, data.validated_data["otp"], field="otp")
        services.mfa_disable(user=user)
        return Response(self.status_body())


class PasswordResetIpThrottle(SimpleRateThrottle):
    """Reset requests per client address; a client cannot pick a fresh one per request with
    X-Forwarded-For."""

    scope = "password_reset_ip"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request) or "unknown"}


class PasswordResetEmailThrottle(SimpleRateThrottle):
    """Reset requests per email address asked about, from wherever they come, so no one can fill a mailbox
    with reset emails. It counts unknown addresses as well: a 429 says nothing about an account."""

    scope = "password_reset_email"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        email = request.data.get("email") if hasattr(request.data, "get") else None
        if not isinstance(email, str) or not email.strip():
            return None  # nothing to send to: the serializer refuses it
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": digest}


RESET_REQUESTED_MESSAGE = (
    "If an account uses this address, an email with a link to choose a new password is on its way."
)


class PasswordResetRequestView(APIView):
    """Someone signed out asks for a link to choose a new password. The answer is the same 202 whether or
    not an account has the address, and comes as fast: the lookup and the email happen in a Celery task."""

    permission_classes = [AllowAny]
    # No credential is read (so no CSRF check either): the request changes nothing, and the confirmation
    # needs the emailed token.
    authentication_classes: list[Any] = []
    throttle_classes = [PasswordResetIpThrottle, PasswordResetEmailThrottle]

    @extend_schema(
        request=PasswordResetRequestInputSerializer,
        responses={202: PasswordResetRequestedSerializer},
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        data = PasswordResetRequestInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.password_reset_request(email=data.validated_data["email"])
        return Response({"detail": RESET_REQUESTED_MESSAGE}, status=status.HTTP_202_ACCEPTED)


class PasswordResetConfirmView(APIView):
    """Sets a new password with the uid and token of a reset link. Every session and refresh token of the
    user ends; the link is spent."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []
    # Guessing tokens is hopeless (HMAC-SHA256), but still not at the sign-in form's rate.
    throttle_classes = [LoginThrottle]

    @extend_schema(request=PasswordResetConfirmInputSerializer, responses={204: None}, tags=["auth"])
    def post(self, request: Request) -> Response:
        data = PasswordResetConfirmInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.user_password_reset(
            uid=data.validated_data["uid"],
            token=data.validated_data["token"],
            new_password=data.validated_data["new_password"],
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class WorkspaceViewSet(WorkspaceScopedModelViewSet):
    queryset = Workspace.objects.none()
    serializer_class = WorkspaceSerializer
    workspace_lookup = "id"
    write_role = Role.ADMIN
    filterset_fields: list[str] = []

    def scoped_queryset(self) -> QuerySet[Workspace]:
        return selectors.workspace_list_for_user(user=self.request.user)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if isinstance(request.auth, ApiKey):
            raise exceptions.PermissionDenied(
                "API keys are bound to one workspace and cannot create another."
            )
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        workspace = services.workspace_create(
            name=serializer.validated_data["name"], created_by=cast(User, request.user)
        )
        workspace = selectors.workspace_get_for_user(user=request.user, workspace_id=workspace.id)
        return Response(self.get_serializer(workspace).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer: Any) -> None:
        # A PATCH may leave the name out: then nothing changes.
        name = serializer.validated_data.get("name", serializer.instance.name)
        services.workspace_update(workspace=serializer.instance, name=name)

    def perform_destroy(self, instance: Workspace) -> None:
        services.workspace_delete(workspace=instance)


class MembershipViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    WorkspaceScopedViewSet,
):
    """Members of a workspace: every member reads the list; admins change roles and remove members."""

    queryset = Membership.objects.none()
    serializer_class = MembershipSerializer
    write_role = Role.ADMIN
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def scoped_queryset(self) -> QuerySet[Membership]:
        return selectors.member_list(user=self.request.user, workspace_id=self.kwargs["workspace_pk"])

    @extend_schema(request=MembershipRoleSerializer, responses={200: MembershipSerializer})
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        membership = self.get_object()
        data = MembershipRoleSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        # A PATCH without a role changes nothing (the schema's PATCH body has no required field).
        if "role" in data.validated_data:
            membership = services.membership_set_role(
                membership=membership, role=Role(data.validated_data["role"])
            )
        return Response(MembershipSerializer(membership).data)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.partial_update(request, *args, **kwargs)

    def perform_destroy(self, instance: Membership) -> None:
        services.membership_remove(membership=instance)


class InvitationViewSet(
    mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, WorkspaceScopedViewSet
):
    """Invitations of a workspace (admins only)."""

    queryset = Invitation.objects.none()
    serializer_class = InvitationSerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    def scoped_queryset(self) -> QuerySet[Invitation]:
        workspace_id = self.kwargs["workspace_pk"]
        if not selectors.has_role(user=self.request.user, workspace_id=int(workspace_id), role=Role.ADMIN):
            selectors.workspace_get_for_user(user=self.request.user, workspace_id=workspace_id)  # 404 first
            raise exceptions.PermissionDenied("Only workspace admins see invitations.")
        return selectors.invitation_list(user=self.request.user, workspace_id=workspace_id)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        workspace = selectors.workspace_get_for_user(
            user=request.user, workspace_id=self.kwargs["workspace_pk"]
        )
        if not selectors.has_role(user=request.user, workspace_id=workspace.id, role=Role.ADMIN):
            raise exceptions.PermissionDenied("Only workspace admins invite people.")
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        invitation, _token = services.invitation_create(
            workspace=workspace,
            email=serializer.validated_data["email"],
            # The model's default (viewer) when the body names no role: least privilege.
            role=Role(serializer.validated_data.get("role", Role.VIEWER)),
            invited_by=cast(User, request.user),
        )
        return Response(self.get_serializer(invitation).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Invitation) -> None:
        services.invitation_revoke(invitation=instance)


class ApiKeyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    WorkspaceScopedViewSet,
):
    """API keys of the workspaces you administer. The key itself is shown once, in the create response;
    DELETE revokes it at once (the row stays for the audit trail)."""

    queryset = ApiKey.objects.none()
    serializer_class = ApiKeySerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    def scoped_queryset(self) -> QuerySet[ApiKey]:
        return selectors.api_key_list_for_user(user=self.request.user)

    @extend_schema(request=ApiKeyCreateInputSerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        workspace = self.workspace_for_create(request, role=Role.ADMIN)
        data = ApiKeyCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key, raw = services.api_key_create(
            workspace=workspace,
            user=cast(User, request.user),
            name=data.validated_data["name"],
            scopes=data.validated_data["scopes"],
            expires_at=data.validated_data.get("expires_at"),
        )
        body = ApiKeyCreatedSerializer(key).data
        body["key"] = raw
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: ApiKey) -> None:
        services.api_key_revoke(api_key=instance)
