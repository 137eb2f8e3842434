from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.users.models import ApiKey, ApiKeyScope, Invitation, Membership, Role, User, Workspace


class LoginInputSerializer(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(write_only=True, trim_whitespace=False, style={"input_type": "password"})


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


class MeSerializer(UserSerializer):
    workspaces = serializers.SerializerMethodField()
    auth = serializers.SerializerMethodField()

    class Meta(UserSerializer.Meta):
        fields = [*UserSerializer.Meta.fields, "workspaces", "auth"]

    def get_workspaces(self, user: User) -> list[dict[str, Any]]:
        from apps.users.selectors import user_workspace_summaries

        return MeWorkspaceSerializer(user_workspace_summaries(user=user), many=True).data  # type: ignore[return-value]

    def get_auth(self, user: User) -> str:
        return str(self.context.get("auth_type", "session"))


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
