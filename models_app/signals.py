"""What models_app announces to the apps above it, which it does not import.

``model_deleting`` (with ``user`` and ``model``) and ``run_deleting`` (with ``user`` and
``run``) are sent by models_app.services inside the transaction that deletes the model or
run, before its rows go: a receiver keeps what refers to it (chat keeps the conversations,
read-only: invariant 5) and answers how many rows it kept. A receiver that fails rolls the
deletion back.
"""

from django.dispatch import Signal

model_deleting = Signal()
run_deleting = Signal()
