"""REST endpoints of the LLMs on offer and of the caller's usage (SPEC 4.6, "Personal"):
``GET /api/llms/`` and ``GET /api/usage/?days=30``."""

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors as account_selectors
from chat import usage
from chat.llm import available_llms
from core.api import errors, parse

from . import serializers as s


class LLMListView(APIView):
    @extend_schema(
        operation_id="llms_list",
        responses={200: s.LLMListSerializer, **errors()},
        summary="The LLMs you can choose",
        description=(
            "The provider's models (its `GET /v1/models`, cached LLM_MODELS_CACHE seconds), "
            "limited to LLM_MODELS when the server sets it, LLM_MODEL first. A "
            "conversation's `llm` (POST and PATCH `/api/sessions/`, a stream's `llm`) and "
            "your `default_llm` must be one of these. Not paginated."
        ),
    )
    def get(self, request):
        user = account_selectors.profile_get(user=request.user)
        return Response(
            {
                "results": [{"id": name} for name in available_llms()],
                "default": user.default_llm or settings.LLM_MODEL,
            }
        )


class UsageView(APIView):
    @extend_schema(
        operation_id="usage_retrieve",
        parameters=[s.UsageQuerySerializer],
        responses={200: s.UsageReportSerializer, **errors(400)},
        summary="Your tokens per day and LLM, and your daily quota",
        description=(
            "The prompt and completion tokens of the replies you asked for (sends, edits, "
            "regenerations; not the titles and summaries Parlor makes on its own), per UTC "
            "day and LLM, for the last `days` days (today included). `quota` is null when "
            "no daily limit applies to you; once `used_today` reaches `tokens_per_day`, "
            "sending answers 429 `quota_exceeded` until `resets_at` (the next UTC midnight)."
        ),
    )
    def get(self, request):
        days = parse(s.UsageQuerySerializer, request.query_params)["days"]
        report = usage.usage_report(user=request.user, days=days)
        return Response(s.UsageReportSerializer(report).data)
