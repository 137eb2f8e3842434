import re
from typing import Any

from django.conf import settings
from rest_framework import exceptions, pagination
from rest_framework.request import Request

BIG_DIGITS = 18
BIG = 10**BIG_DIGITS


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """`?limit=&offset=`, with a ceiling so one request cannot ask for a whole table. A `limit` above the
    ceiling is cut to it; one that is not a whole number from 1, or an `offset` that is not one from 0, is a
    400 at the parameter (DRF would quietly answer the first page instead, hiding the client's mistake)."""

    default_limit = 50
    max_limit = settings.AGGREGATOR_API_MAX_LIMIT

    def _number(self, request: Request, name: str, minimum: int) -> int | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        digits = (raw.lstrip("0") or "0") if re.fullmatch(r"[0-9]+", raw) else ""
        # Past any table's size a number only has to stay one the database can compare.
        value = BIG if len(digits) > BIG_DIGITS else int(digits or -1)
        if value < minimum:
            raise exceptions.ValidationError({name: [f"A whole number from {minimum}."]})
        return value

    def get_limit(self, request: Request) -> int:
        limit = self._number(request, self.limit_query_param, 1)
        if limit is None:
            return self.default_limit
        return min(limit, self.max_limit)

    def get_offset(self, request: Request) -> int:
        return self._number(request, self.offset_query_param, 0) or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["schema"]["minimum"] = 1
                parameter["description"] = (
                    f"Number of results to return per page ({self.default_limit} when absent; "
                    f"at most {self.max_limit}, a larger one is cut to it)."
                )
            elif parameter["name"] == self.offset_query_param:
                parameter["schema"]["minimum"] = 0
        return parameters
