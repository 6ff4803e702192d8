"""gunicorn's access log, without the capability tokens some URLs carry."""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]

from hls.lib.logging import redact


class RedactedAtoms(dict[str, Any]):
    """gunicorn's log atoms, each redacted (and quoted as gunicorn does) only when the log
    format asks for it: a line uses a handful of the dozens of atoms a request has."""

    def __getitem__(self, key: str) -> Any:
        if key.startswith("{"):
            key = key.lower()
        value = self.get(key, "-")
        if isinstance(value, str):
            return redact(value).replace('"', '\\"')
        return value


class RedactingLogger(Logger):
    atoms_wrapper_class = RedactedAtoms
