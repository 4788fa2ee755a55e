"""Background jobs of a conversation: its title and its rolling summary.

Both ask the LLM for a short non-streamed answer after a reply began or ended; a failure
leaves things as they were (the provisional title, the previous summary).
"""

import logging

from django.conf import settings

from chat import llm, prompting, services

from . import db, events

logger = logging.getLogger(__name__)


async def title(engine, *, session: str, content: str) -> None:
    """Generate a conversation's title and push it to its watchers."""
    try:
        text = await llm.complete(
            messages=prompting.title_messages(content),
            model=settings.LLM_TITLE_MODEL,
            max_tokens=30,
        )
    except llm.LLMError as exc:
        logger.info("title generation for %s failed: %s", session, exc.reason)
        return
    stored = await db.run(services.conversation_set_auto_title, session_id=session, title=text)
    if stored:
        engine.announce(events.title(session, stored))


async def summarize(*, session, force: bool = False) -> bool:
    """Bring a conversation's rolling summary up to date; return whether it changed."""
    job = await db.run(prompting.summary_job, session_id=session, force=force)
    if job is None:
        return False
    try:
        summary = await llm.complete(
            messages=job.messages, model=settings.LLM_SUMMARY_MODEL, max_tokens=400
        )
    except llm.LLMError as exc:
        logger.info("summary of %s failed: %s", session, exc.reason)
        return False
    if not summary.strip():
        return False
    await db.run(
        services.conversation_set_summary,
        session_id=session,
        summary=summary.strip(),
        until_message_id=job.until_id,
        message_count=job.message_count,
    )
    return True
