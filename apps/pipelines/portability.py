"""Pipelines as code: a workspace's connectors and pipelines as one YAML document, and back.

Secrets are never written: each secret field of a connector is exported as a `${ENV_VAR}` reference (named
after the connector and field) that import resolves from its environment. Import is idempotent by name:
unchanged objects are left alone, changed ones updated (a pipeline whose document changed gets a new
version), and the report says which."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.connectors.selectors import (
    connector_find_by_name,
    connector_list_for_workspace,
    connector_secret_status,
    connector_secrets,
)
from apps.connectors.services import connector_create, connector_update

from .models import Pipeline
from .services import SETTING_FIELDS, pipeline_create, pipeline_update

FORMAT_VERSION = 1
_ENV_REF = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*)\}$")


def env_var_name(connector_name: str, field_name: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", f"{connector_name}_{field_name}".upper()).strip("_")


def export_workspace(*, workspace: Any) -> dict[str, Any]:
    connectors = []
    for connector in connector_list_for_workspace(workspace_id=workspace.id):
        config = dict(connector.config)
        for name, status in connector_secret_status(connector).items():
            if status["is_set"]:
                config[name] = "${" + env_var_name(connector.name, name) + "}"
        connectors.append({"name": connector.name, "type": connector.connector_type, "config": config})
    pipelines = []
    for pipeline in (
        Pipeline.objects.filter(workspace=workspace).prefetch_related("depends_on").order_by("name")
    ):
        pipelines.append(
            {
                "name": pipeline.name,
                "settings": {key: getattr(pipeline, key) for key in SETTING_FIELDS},
                "depends_on": sorted(p.name for p in pipeline.depends_on.all()),
                "definition": pipeline.definition,
            }
        )
    return {"version": FORMAT_VERSION, "connectors": connectors, "pipelines": pipelines}


def dump_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            *(f"created {name}" for name in self.created),
            *(f"updated {name}" for name in self.updated),
            *(f"unchanged {name}" for name in self.unchanged),
        ]


def _resolve_env(config: dict[str, Any], where: str) -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        match = _ENV_REF.match(value) if isinstance(value, str) else None
        if match:
            if match.group(1) not in os.environ:
                raise ValidationError(
                    {where: [f"Environment variable {match.group(1)} (for `{key}`) is not set."]}
                )
            out[key] = os.environ[match.group(1)]
        else:
            out[key] = value
    return out


def _meaningful(config: dict[str, Any]) -> dict[str, Any]:
    # An empty secret and an absent one are the same setting.
    return {k: v for k, v in config.items() if v not in (None, "")}


@transaction.atomic
def import_workspace(*, workspace: Any, document: Any, user: Any = None) -> ImportReport:
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        raise ValidationError({"version": [f"Expected a document with `version: {FORMAT_VERSION}`."]})
    report = ImportReport()
    for index, item in enumerate(document.get("connectors") or []):
        where = f"connectors.{index}"
        if not isinstance(item, dict) or not {"name", "type", "config"} <= set(item):
            raise ValidationError({where: ["A connector needs `name`, `type` and `config`."]})
        config = _resolve_env(dict(item["config"] or {}), where)
        existing = connector_find_by_name(workspace_id=workspace.id, name=item["name"])
        label = f"connector {item['name']}"
        if existing is None:
            connector_create(
                workspace=workspace, user=user, name=item["name"], connector_type=item["type"], config=config
            )
            report.created.append(label)
        else:
            current = {**existing.config, **connector_secrets(existing)}
            if existing.connector_type == item["type"] and _meaningful(current) == _meaningful(config):
                report.unchanged.append(label)
            else:
                connector_update(connector=existing, user=user, config=config)
                report.updated.append(label)

    pending_dependencies: list[tuple[Pipeline, list[str]]] = []
    for index, item in enumerate(document.get("pipelines") or []):
        where = f"pipelines.{index}"
        if not isinstance(item, dict) or not {"name", "definition"} <= set(item):
            raise ValidationError({where: ["A pipeline needs `name` and `definition`."]})
        settings = {k: v for k, v in (item.get("settings") or {}).items() if k in SETTING_FIELDS}
        existing_pipeline = Pipeline.objects.filter(workspace=workspace, name=item["name"]).first()
        label = f"pipeline {item['name']}"
        if existing_pipeline is None:
            pipeline = pipeline_create(
                workspace=workspace,
                name=item["name"],
                definition=item["definition"],
                user=user,
                message="Imported",
                **settings,
            )
            report.created.append(label)
        else:
            pipeline = existing_pipeline
            differs = existing_pipeline.definition != item["definition"] or any(
                getattr(existing_pipeline, k) != v for k, v in settings.items()
            )
            if differs:
                pipeline_update(
                    pipeline=existing_pipeline,
                    user=user,
                    definition=item["definition"],
                    message="Imported",
                    **settings,
                )
                report.updated.append(label)
            else:
                report.unchanged.append(label)
        pending_dependencies.append((pipeline, list(item.get("depends_on") or [])))

    for pipeline, names in pending_dependencies:
        upstream = list(Pipeline.objects.filter(workspace=workspace, name__in=names))
        missing = set(names) - {p.name for p in upstream}
        if missing:
            raise ValidationError(
                {"depends_on": [f"Pipeline '{pipeline.name}' depends on unknown {sorted(missing)}."]}
            )
        if sorted(p.name for p in pipeline.depends_on.all()) != sorted(names):
            pipeline_update(pipeline=pipeline, user=user, depends_on=upstream)
    return report
