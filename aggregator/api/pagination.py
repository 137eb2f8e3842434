from django.conf import settings
from rest_framework import pagination


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """`?limit=&offset=`, with a ceiling so one request cannot ask for a whole table."""

    default_limit = 50
    max_limit = settings.AGGREGATOR_API_MAX_LIMIT
