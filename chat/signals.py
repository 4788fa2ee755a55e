"""What the conversation services announce to those who react (the streaming engine).

The services do not import the engine (it imports them); a signal sent once a write has
committed is how a rule of the domain reaches it.
"""

from django.dispatch import Signal

# Sent after commit with session_ids=[str, ...]: those conversations no longer exist.
conversations_deleted = Signal()

# Sent after commit with session_id=str and either message=Message with name=str (one a
# person wrote, and their name: the owner while an operator is in, or an operator) or
# participant={"action", "name"} (someone asked for a person, an operator joined or
# left): the conversation's watchers are told.
conversation_news = Signal()
