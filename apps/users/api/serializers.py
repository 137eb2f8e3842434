from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.users.models import ApiKey, ApiKeyScope, Invitation, Membership, Role, User, Workspace


class LoginInputSerializer(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(write_only=True, trim_whitespace=False, style={"input_type": "password"})
    otp = serializers.CharField(
        required=False,
        allow_blank=True,
        write_only=True,
        max_length=32,
        help_text=(
            "For an account with two-factor authentication on: the 6-digit code of its authenticator app, "
            "or one of its recovery codes (spent by this sign-in). Without it such an account is answered "
            '401 `{"error": {"code": "mfa_required"}}`: send the same body again with `otp`. A wrong code '
            "is 401 `mfa_invalid` and counts towards the lockout like a wrong password."
        ),
    )


class OtpInputSerializer(serializers.Serializer):
    otp = serializers.CharField(
        max_length=32, help_text="A 6-digit code of the authenticator app, or a recovery code."
    )


class MfaConfirmInputSerializer(serializers.Serializer):
    otp = serializers.CharField(max_length=32, help_text="The 6-digit code the new authenticator shows.")


class MfaProofInputSerializer(serializers.Serializer):
    otp = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=32,
        help_text="A 6-digit code of the authenticator app, or a recovery code (spent).",
    )
    password = serializers.CharField(
        required=False,
        allow_blank=True,
        write_only=True,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="Your password, instead of a code.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("otp") and not attrs.get("password"):
            raise serializers.ValidationError(
                {"otp": ["Enter a code from your authenticator app, or your password."]}
            )
        return attrs


class MfaStatusSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(help_text="A confirmed authenticator app is set up.")
    # The metaclass takes declared fields off the class, so this does not shadow Field.required.
    required = serializers.BooleanField(help_text="AGGREGATOR_MFA_REQUIRED_FOR covers this user.")  # type: ignore[assignment]
    enrolment_required = serializers.BooleanField(
        help_text="Required but not set up: every other API call answers 403 `mfa_enrolment_required`."
    )
    enabled_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    recovery_codes_left = serializers.IntegerField()


class MfaTotpEnrolmentSerializer(serializers.Serializer):
    secret = serializers.CharField(
        help_text="The key in base32, for typing into an app by hand. Shown only in this answer."
    )
    otpauth_uri = serializers.CharField(help_text="The otpauth:// URI the QR code holds.")
    qr_svg = serializers.CharField(help_text="The QR code of otpauth_uri, an SVG document.")
    digits = serializers.IntegerField()
    period = serializers.IntegerField(help_text="Seconds each code lasts.")


class MfaRecoveryCodesSerializer(serializers.Serializer):
    recovery_codes = serializers.ListField(
        child=serializers.CharField(),
        help_text="Each works once, instead of a code of the app. Shown only in this answer.",
    )
    status = MfaStatusSerializer()


class PasswordChangeInputSerializer(serializers.Serializer):
    current_password = serializers.CharField(
        write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )
    new_password = serializers.CharField(
        write_only=True, trim_whitespace=False, max_length=4096, style={"input_type": "password"}
    )


class PasswordResetRequestInputSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)


class PasswordResetRequestedSerializer(serializers.Serializer):
    detail = serializers.CharField()


class PasswordResetConfirmInputSerializer(serializers.Serializer):
    uid = serializers.CharField(max_length=64)
    token = serializers.CharField(max_length=128)
    new_password = serializers.CharField(
        write_only=True, trim_whitespace=False, max_length=4096, style={"input_type": "password"}
    )


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "full_name", "is_staff", "date_joined"]
        read_only_fields = ["id", "email", "is_staff", "date_joined"]


class MeWorkspaceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)


class MeMfaSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    required = serializers.BooleanField()  # type: ignore[assignment]
    enrolment_required = serializers.BooleanField()


class MeSerializer(UserSerializer):
    workspaces = serializers.SerializerMethodField()
    auth = serializers.SerializerMethodField()
    mfa = serializers.SerializerMethodField()

    class Meta(UserSerializer.Meta):
        fields = [*UserSerializer.Meta.fields, "workspaces", "auth", "mfa"]

    def get_workspaces(self, user: User) -> list[dict[str, Any]]:
        from apps.users.selectors import user_workspace_summaries

        return MeWorkspaceSerializer(user_workspace_summaries(user=user), many=True).data  # type: ignore[return-value]

    def get_auth(self, user: User) -> str:
        return str(self.context.get("auth_type", "session"))

    @extend_schema_field(MeMfaSerializer)
    def get_mfa(self, user: User) -> dict[str, bool]:
        from apps.users.selectors import mfa_enabled, mfa_required

        enabled, required = mfa_enabled(user=user), mfa_required(user=user)
        return {"enabled": enabled, "required": required, "enrolment_required": required and not enabled}


class WorkspaceSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()
    member_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Workspace
        fields = ["id", "name", "slug", "created_at", "role", "member_count"]
        read_only_fields = ["id", "slug", "created_at", "role", "member_count"]

    def get_role(self, workspace: Workspace) -> str | None:
        from apps.users.selectors import role_for

        role = role_for(user=self.context["request"].user, workspace_id=workspace.id)
        return role.value if role else None


class MembershipSerializer(serializers.ModelSerializer):
    user = UserSerializer(read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "user", "role", "created_at"]
        read_only_fields = ["id", "user", "created_at"]


class MembershipRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationSerializer(serializers.ModelSerializer):
    invited_by = serializers.EmailField(source="invited_by.email", read_only=True, default=None)
    status = serializers.SerializerMethodField()

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "invited_by", "created_at", "expires_at", "accepted_at", "status"]
        read_only_fields = ["id", "invited_by", "created_at", "expires_at", "accepted_at", "status"]

    def get_status(self, invitation: Invitation) -> str:
        if invitation.accepted_at:
            return "accepted"
        return "pending" if invitation.is_pending else "expired"


class AcceptInvitationSerializer(serializers.Serializer):
    token = serializers.CharField()
    password = serializers.CharField(required=False, write_only=True, trim_whitespace=False)
    full_name = serializers.CharField(required=False, allow_blank=True, default="")


class ApiKeySerializer(serializers.ModelSerializer):
    workspace = serializers.IntegerField(source="workspace_id", read_only=True)
    user = serializers.EmailField(source="user.email", read_only=True)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKeyScope.choices), allow_empty=False, default=["read"]
    )
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "workspace",
            "user",
            "name",
            "prefix",
            "scopes",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "is_active",
        ]
        read_only_fields = ["id", "workspace", "user", "prefix", "created_at", "last_used_at", "revoked_at"]


class ApiKeyCreateInputSerializer(ApiKeySerializer):
    workspace = serializers.IntegerField(required=False, write_only=True)

    class Meta(ApiKeySerializer.Meta):
        fields = ["workspace", "name", "scopes", "expires_at"]
        read_only_fields: list[str] = []


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The full key. Shown only in this response.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
