"""Link tokens and feed secrets are credentials: uvicorn's access log gets the path with them blanked out."""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "uvicorn.access"
REDACTED = "REDACTED"
_SECRET_SEGMENT = re.compile(r"(/web/|/v1/(?:feedback|unsubscribe|feeds)/)[^/?#\s]+")


def redact_path(path: str) -> str:
    """``/web/{token}/rate`` -> ``/web/REDACTED/rate``; the same for feedback, unsubscribe and feed URLs."""
    return _SECRET_SEGMENT.sub(rf"\g<1>{REDACTED}", path)


class RedactSecrets(logging.Filter):
    """Rewrites the path of uvicorn's access records, ``args = (client, method, path, http_version, status)``."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact_path(args[2]), *args[3:])
        return True


_redact = RedactSecrets()


def install_access_log_redaction() -> None:
    """On the logger itself (not a handler), so it holds whatever handlers uvicorn, ``paperwire run`` or a
    log config attach; adding it twice is a no-op."""
    logging.getLogger(ACCESS_LOGGER).addFilter(_redact)
