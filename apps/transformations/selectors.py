from __future__ import annotations

from typing import Any

from django.http import Http404

from .steps import StepError, StepType, all_step_types, get_step_type


def step_type_data(step_type: type[StepType[Any]] | StepType[Any]) -> dict[str, Any]:
    cls = step_type if isinstance(step_type, type) else type(step_type)
    return {
        "slug": cls.slug,
        "title": cls.title,
        "description": cls.description,
        "category": cls.category,
        "min_inputs": cls.min_inputs,
        "max_inputs": cls.max_inputs,
        "buffers": cls.buffers,
        "config_schema": cls.json_schema(),
    }


def step_type_list() -> list[dict[str, Any]]:
    return [step_type_data(cls) for cls in all_step_types()]


def step_type_get(*, slug: str) -> dict[str, Any]:
    try:
        return step_type_data(get_step_type(slug))
    except StepError:
        raise Http404("No such step type.") from None
