"""Small helpers for the few writes that go to SQL directly, for speed, with the ORM's values.

``insert_parts`` turns an unsaved model instance into the column list, placeholders and
parameters of its INSERT, prepared exactly as ``Model.save()`` would (defaults, ``auto_now``,
JSON and array adaptation), so hand-written statements cannot drift from the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection
from django.db.models import Model


def insert_parts(obj: Model, **sql_values: str) -> tuple[str, str, list[Any]]:
    """``(columns, placeholders, params)`` for inserting ``obj`` (its primary key left out).

    ``sql_values`` maps a field's attname to a SQL expression used instead of a parameter, for
    values the statement itself supplies (``object_id="added.id"``).
    """
    quote = connection.ops.quote_name
    columns, placeholders, params = [], [], []
    for field in obj._meta.concrete_fields:
        if field.primary_key and field.attname not in sql_values:
            continue
        columns.append(quote(field.column))
        if field.attname in sql_values:
            placeholders.append(sql_values[field.attname])
            continue
        value = field.pre_save(obj, add=True)
        params.append(field.get_db_prep_save(value, connection))
        placeholders.append("%s")
    return ", ".join(columns), ", ".join(placeholders), params


@contextmanager
def try_advisory_lock(key: tuple[int, int]) -> Iterator[bool]:
    """Hold a session-level PostgreSQL advisory lock for the block; False if another holds it.

    The lock belongs to the database session, so a worker that dies releases it.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
        got = bool(cursor.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)
