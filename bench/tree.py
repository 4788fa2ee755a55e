"""What a message tree costs the reads that follow its current path (issue 13).

Two conversations of 1,000 messages, written through the services as people would: one
path of 500 turns, and a tree of 450 turns on its path with 50 questions edited along it
(50 branches: each a new version of a question with its reply). On each, timed over many
runs (p50/p95, with the number of queries):

- the newest page as the chat page and the API read it: the path's 50 newest messages
  with their versions and the reader's ratings (``message_page`` + ``message_details``),
  and the same page rendered to HTML (the server's Markdown included);
- the context of the next reply (``prompting.reply_context``: what the LLM is sent);
- switching versions (``conversation_branch``) between two branches that part near the
  start (a 900-message branch swapped for another) and near the end.

The tree's figures are reported beside the single path's, as ratios.
"""

from django.template.loader import render_to_string

from .db_pages import _timed

TURNS = 500
BRANCHES = 50
RUNS = 200


def _conversation(user, *, branches: int):
    """Write a conversation of 2 * TURNS messages with ``branches`` edited questions."""
    from chat import services
    from chat.models import Message

    session, _ = services.conversation_start(user=user)
    turns = TURNS - branches
    every = max(turns // max(branches, 1), 1)
    questions = []
    for turn in range(turns):
        reply = services.reply_start(
            user=user, content=f"Question {turn}: " + "lorem ipsum " * 12, session_id=session.pk
        )
        services.reply_finish(
            message_id=reply.assistant_message.pk,
            status=Message.Status.COMPLETE,
            content=f"Answer {turn}, with `code` and **bold**. " + "dolor sit amet " * 20,
        )
        questions.append(reply.user_message.pk)
    edited = questions[::every][:branches]
    for number, question in enumerate(edited):
        reply = services.reply_edit(
            user=user, message_id=question, content=f"Question, version 2 ({number})"
        )
        services.reply_finish(
            message_id=reply.assistant_message.pk,
            status=Message.Status.COMPLETE,
            content=f"Another answer ({number}). " + "dolor sit amet " * 20,
        )
    # Back on the first version all along: the longest path, the one a reader follows.
    last = None
    for question in questions[:1] if edited else []:
        last = services.conversation_branch(user=user, session_id=session.pk, message_id=question)
    session.refresh_from_db()
    assert Message.objects.filter(session=session).count() == 2 * TURNS
    return session, edited, last


def _measure(user, session, *, edited) -> dict:
    from chat import prompting, selectors, services
    from chat.models import Message

    def page():
        rows, _ = selectors.message_page(session=session, limit=50)
        selectors.message_details(rows, user=user)
        assert len(rows) == 50
        return rows

    def rendered():
        rows, has_more = selectors.message_page(session=session, limit=50)
        selectors.message_details(rows, user=user)
        render_to_string(
            "chat/partials/_message_page.html",
            {"session": session, "messages": rows, "has_more": has_more},
        )

    leaf = Message.objects.filter(session=session, on_path=True).order_by("-id").first()

    def context():
        built = prompting.reply_context(session=session, message_id=leaf.pk)
        assert len(built.messages) > 2

    out = {
        "messages": Message.objects.filter(session=session).count(),
        "path": Message.objects.filter(session=session, on_path=True).count(),
        "page": _timed(page, RUNS),
        "page_html": _timed(rendered, max(RUNS // 4, 20)),
        "context": _timed(context, RUNS),
    }
    if edited:
        # Two versions of the first edited question, then of the last: each switch swaps
        # the whole branch after it.
        for name, question in (("switch_early", edited[0]), ("switch_late", edited[-1])):
            versions = list(
                Message.objects.filter(
                    session=session,
                    parent_id=Message.objects.get(pk=question).parent_id,
                    role="user",
                )
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            flip = {"at": 0}

            def switch(versions=versions, flip=flip):
                flip["at"] = 1 - flip["at"]
                services.conversation_branch(
                    user=user, session_id=session.pk, message_id=versions[flip["at"]]
                )

            out[name] = _timed(switch, 40)
        services.conversation_branch(user=user, session_id=session.pk, message_id=edited[0])
    return out


def run() -> dict:
    from accounts.models import User

    user = User.objects.create_user("bench-tree", password="x")
    single, _, _ = _conversation(user, branches=0)
    tree, edited, _ = _conversation(user, branches=BRANCHES)
    out = {
        "single_path": _measure(user, single, edited=[]),
        "tree": _measure(user, tree, edited=edited),
    }
    for name in ("page", "page_html", "context"):
        base, branched = out["single_path"][name], out["tree"][name]
        out[f"{name}_p50_ratio"] = round(branched["p50_ms"] / base["p50_ms"], 2)
    return out
