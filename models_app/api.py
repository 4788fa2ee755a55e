"""REST endpoints for models and runs (with trades), owner-scoped (SPEC 4.1).

Writes go through models_app.services: deleting a model or run keeps its
conversations, inactive and read-only (invariant 5).
"""

from django.db import models as db_models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import StrictBooleanField, StrictCharField, StrictFieldsMixin, errors, parse

from . import selectors, services
from .models import Model, Run, Trade


class StrictModelSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """Strings must be strings and booleans booleans; nothing is coerced."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        db_models.CharField: StrictCharField,
        db_models.TextField: StrictCharField,
        db_models.BooleanField: StrictBooleanField,
    }


# The serializers check shapes and types; the rules of the values (models_app.services)
# are checked by the service they call, with the same messages as on the pages. What the
# schema says of those rules is documentation only.


@extend_schema_field({"type": "string", "enum": list(services.ORDER_TYPES)})
class OrderTypeField(StrictCharField):
    """An order type; services.model_problems refuses one not in the fixed list."""


class ModelSerializer(StrictModelSerializer):
    allowed_order_types = serializers.ListField(
        child=OrderTypeField(max_length=40),
        required=False,
        max_length=20,
        help_text="Each at most once.",
    )

    class Meta:
        model = Model
        fields = ["id", *services.MODEL_FIELDS, "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"buying_power": {"help_text": "Not negative."}}


class TradeSerializer(StrictModelSerializer):
    class Meta:
        model = Trade
        fields = ["id", *services.TRADE_FIELDS]
        read_only_fields = ["id"]
        extra_kwargs = {
            "quantity": {"help_text": "More than zero."},
            "price": {"help_text": "More than zero."},
            "executed_at": {"help_text": "Within the run's started_at and ended_at, when set."},
        }


class RunSerializer(StrictModelSerializer):
    trades = TradeSerializer(many=True, required=False)
    pnl = serializers.DecimalField(max_digits=15, decimal_places=2, read_only=True, allow_null=True)

    class Meta:
        model = Run
        fields = ["id", "model", *services.RUN_FIELDS, "pnl", "created_at", "trades"]
        read_only_fields = ["id", "model", "pnl", "created_at"]
        extra_kwargs = {
            "starting_capital": {"help_text": "Not negative."},
            "ended_at": {
                "help_text": (
                    "Not before started_at (which it needs), nor before the run's last trade; "
                    "empty while the run is pending or running."
                )
            },
            "started_at": {"help_text": "Not after the run's first trade."},
        }


class RunUpdateSerializer(RunSerializer):
    class Meta(RunSerializer.Meta):
        fields = ["id", "model", *services.RUN_FIELDS, "pnl", "created_at"]


def _partial(serializer_class, instance, data) -> dict:
    serializer = serializer_class(instance, data=data, partial=True)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


MODEL_ID = OpenApiParameter("model_id", OpenApiTypes.INT, OpenApiParameter.PATH)
RUN_ID = OpenApiParameter("run_id", OpenApiTypes.INT, OpenApiParameter.PATH)


class ModelListView(APIView):
    @extend_schema(
        operation_id="models_list",
        responses={200: ModelSerializer(many=True), **errors()},
        summary="Your models",
    )
    def get(self, request):
        models = selectors.model_list(user=request.user)
        return Response(ModelSerializer(models, many=True).data)

    @extend_schema(
        operation_id="models_create",
        request=ModelSerializer,
        responses={201: ModelSerializer, **errors(400)},
        summary="Create a model",
    )
    def post(self, request):
        data = parse(ModelSerializer, request.data)
        model = services.model_create(owner=request.user, **data)
        return Response(ModelSerializer(model).data, status=status.HTTP_201_CREATED)


class ModelDetailView(APIView):
    @extend_schema(
        operation_id="models_retrieve",
        parameters=[MODEL_ID],
        responses={200: ModelSerializer, **errors(400, 404)},
        summary="A model",
    )
    def get(self, request, model_id):
        model = selectors.model_get(user=request.user, model_id=model_id)
        return Response(ModelSerializer(model).data)

    @extend_schema(
        operation_id="models_update",
        parameters=[MODEL_ID],
        request=ModelSerializer,
        responses={200: ModelSerializer, **errors(400, 404)},
        summary="Change a model",
    )
    def patch(self, request, model_id):
        model = selectors.model_get(user=request.user, model_id=model_id)
        data = _partial(ModelSerializer, model, request.data)
        model = services.model_update(user=request.user, model_id=model.pk, **data)
        return Response(ModelSerializer(model).data)

    @extend_schema(
        operation_id="models_destroy",
        parameters=[MODEL_ID],
        responses={204: None, **errors(400, 404)},
        summary="Delete a model and its runs",
        description="Its conversations are kept, inactive and read-only.",
    )
    def delete(self, request, model_id):
        services.model_delete(user=request.user, model_id=model_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ModelRunListView(APIView):
    @extend_schema(
        operation_id="models_runs_list",
        parameters=[MODEL_ID],
        responses={200: RunSerializer(many=True), **errors(400, 404)},
        summary="The runs of a model, newest first, with trades",
    )
    def get(self, request, model_id):
        model = selectors.model_get(user=request.user, model_id=model_id)
        return Response(RunSerializer(selectors.run_list(model=model), many=True).data)

    @extend_schema(
        operation_id="models_runs_create",
        parameters=[MODEL_ID],
        request=RunSerializer,
        responses={201: RunSerializer, **errors(400, 404)},
        summary="Record a run of a model, with its trades",
    )
    def post(self, request, model_id):
        model = selectors.model_get(user=request.user, model_id=model_id)
        data = dict(parse(RunSerializer, request.data))
        trades = [dict(trade) for trade in data.pop("trades", [])]
        run = services.run_create(user=request.user, model_id=model.pk, trades=trades, **data)
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)


class RunDetailView(APIView):
    @extend_schema(
        operation_id="runs_retrieve",
        parameters=[RUN_ID],
        responses={200: RunSerializer, **errors(400, 404)},
        summary="A run with its trades",
    )
    def get(self, request, run_id):
        run = selectors.run_get(user=request.user, run_id=run_id)
        return Response(RunSerializer(run).data)

    @extend_schema(
        operation_id="runs_update",
        parameters=[RUN_ID],
        request=RunUpdateSerializer,
        responses={200: RunSerializer, **errors(400, 404)},
        summary="Change a run (its trades are not edited here)",
    )
    def patch(self, request, run_id):
        run = selectors.run_get(user=request.user, run_id=run_id)
        data = _partial(RunUpdateSerializer, run, request.data)
        run = services.run_update(user=request.user, run_id=run.pk, **data)
        return Response(RunSerializer(run).data)

    @extend_schema(
        operation_id="runs_destroy",
        parameters=[RUN_ID],
        responses={204: None, **errors(400, 404)},
        summary="Delete a run and its trades",
        description="Its conversations are kept, inactive and read-only.",
    )
    def delete(self, request, run_id):
        services.run_delete(user=request.user, run_id=run_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
