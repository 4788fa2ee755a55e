"""What the conversation services announce to those who react (the streaming engine).

The services do not import the engine (it imports them); a signal sent once a write has
committed is how a rule of the domain reaches it.
"""

from django.dispatch import Signal

# Sent after commit with session_ids=[str, ...]: those conversations no longer exist.
conversations_deleted = Signal()
