"""Small helpers for the few writes that go to SQL directly, for speed, with the ORM's values.

``insert_parts`` turns an unsaved model instance into the column list, placeholders and
parameters of its INSERT, prepared exactly as ``Model.save()`` would (defaults, ``auto_now``,
JSON and array adaptation), so hand-written statements cannot drift from the model.
"""

from __future__ import annotations

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
