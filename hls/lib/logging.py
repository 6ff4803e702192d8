"""Log hygiene: capability tokens in URLs never reach the logs."""

from __future__ import annotations

import logging
import re

# Invitation links, resident links and password-reset links carry secrets in their path.
_SECRET_PATHS = re.compile(
    r"(/invitations/|/r/|/accounts/password/reset/[^/\s]+/)[A-Za-z0-9_\-]{8,}"
)


def redact(text: str) -> str:
    return _SECRET_PATHS.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        # Django attaches the request; formatters that print it would bring the path back.
        if hasattr(record, "request"):
            record.request = None
        return True
