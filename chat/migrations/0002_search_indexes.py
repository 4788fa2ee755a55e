"""Full-text search indexes for PostgreSQL (SPEC 3: search over titles and messages).

The expressions are exactly what ``SearchVector(<field>, config="english")`` compiles to,
so the planner uses these GIN indexes for the API's search. SQLite has no full-text
index of this kind (its search is a plain match), so this is a no-op there; it lives in
RunPython rather than ``Meta.indexes`` for that reason, and changes no model state.
"""

from django.db import migrations

INDEXES = {
    "message_content_fts": (
        "chat_message",
        "to_tsvector('english'::regconfig, COALESCE(\"content\", ''))",
    ),
    "session_title_fts": (
        "chat_chatsession",
        "to_tsvector('english'::regconfig, COALESCE(\"title\", ''))",
    ),
}


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, (table, expression) in INDEXES.items():
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" USING gin (({expression}))'
        )


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [("chat", "0001_initial")]

    operations = [migrations.RunPython(create_indexes, drop_indexes, elidable=False)]
