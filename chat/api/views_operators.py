"""People in the loop (SPEC 4.6, "Operators"): asking for a person, the operator queue,
joining and leaving, who takes part. Operators write with the messages endpoint and get a
suggested reply from ``POST /api/sessions/<id>/suggest/`` (chat.views_stream).

Everyone without access gets 404: the queue, joining and leaving need the permission
``chat.operate_conversations`` (staff without it included).
"""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import selectors, services
from core.api import errors, parse
from core.exceptions import NotFound

from . import serializers as s
from .views import SESSION_ID


def participants_data(session) -> dict:
    return s.ParticipantListSerializer(
        {
            "results": selectors.participants(session=session),
            "handoff_requested_at": session.handoff_requested_at,
        }
    ).data


class HandoffView(APIView):
    @extend_schema(
        operation_id="sessions_handoff",
        parameters=[SESSION_ID],
        request=None,
        responses={200: s.ParticipantListSerializer, **errors(400, 404)},
        summary="Ask for a person",
        description=(
            "The owner asks for a person: the conversation joins the operator queue and its "
            "watchers get a `participant` event (`requested`). The assistant answers until "
            "an operator joins. Asking again changes nothing."
        ),
    )
    def post(self, request, session_id):
        session = services.handoff_request(user=request.user, session_id=session_id)
        session.user = request.user
        return Response(participants_data(session))


class JoinView(APIView):
    @extend_schema(
        operation_id="sessions_join",
        parameters=[SESSION_ID],
        request=None,
        responses={200: s.ParticipantListSerializer, **errors(400, 404)},
        summary="Join a conversation as an operator",
        description=(
            "Operators only (`chat.operate_conversations`; anyone else gets 404). While an "
            "operator is in, the owner's messages get no AI reply. The watchers get a "
            "`participant` event (`joined`); the admin log records it."
        ),
    )
    def post(self, request, session_id):
        session = services.operator_join(user=request.user, session_id=session_id)
        return Response(participants_data(session))


class LeaveView(APIView):
    @extend_schema(
        operation_id="sessions_leave",
        parameters=[SESSION_ID],
        request=None,
        responses={200: s.ParticipantListSerializer, **errors(400, 404)},
        summary="Leave a conversation",
        description=(
            "The operator leaves; with the last one gone the assistant answers again (with "
            "the operators' messages in its context) and the request for a person is done."
        ),
    )
    def post(self, request, session_id):
        session = services.operator_leave(user=request.user, session_id=session_id)
        return Response(participants_data(session))


class ParticipantsView(APIView):
    @extend_schema(
        operation_id="sessions_participants",
        parameters=[SESSION_ID],
        responses={200: s.ParticipantListSerializer, **errors(400, 404)},
        summary="Who takes part",
        description="The owner, the assistant and the operators in the conversation now.",
    )
    def get(self, request, session_id):
        session = selectors.session_readable(user=request.user, session_id=session_id)
        return Response(participants_data(session))


class QueueView(APIView):
    @extend_schema(
        operation_id="operator_queue",
        parameters=[s.QueueQuerySerializer],
        responses={200: s.QueueSerializer, **errors(400, 404)},
        summary="The operator queue",
        description=(
            "Conversations whose owner asked for a person, newest request first (at most "
            f"{selectors.QUEUE_LIMIT}), with the operators in each; `q` searches owners' "
            "usernames and display names. `waiting`: those no operator has joined."
        ),
    )
    def get(self, request):
        if not selectors.can_operate(request.user):
            raise NotFound()
        query = parse(s.QueueQuerySerializer, request.query_params)
        sessions = selectors.operator_queue(query=query.get("q") or "")
        results = [
            {
                "id": session.pk,
                "title": session.title,
                "user": session.user.shown_name,
                "username": session.user.username,
                "handoff_requested_at": session.handoff_requested_at,
                "operators": [user.shown_name for user in session.operators],
                "message_count": session.message_count,
                "last_message_at": session.last_message_at,
                "preview": session.preview,
            }
            for session in sessions
        ]
        return Response(
            {
                "results": s.QueueItemSerializer(results, many=True).data,
                "waiting": selectors.queue_waiting(),
            }
        )
