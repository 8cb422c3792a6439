"""Structured logs: one JSON object a line on stderr, for every meshbot process.

`configure()` is the one place a process sets up logging (serve, worker, scheduler
and demo call it). A record's ``fields`` (``extra={"fields": {...}}``) become
top-level keys, which is how the audit line stays one flat object. Secrets never
reach the output: the formatter replaces the values of the secret environment
variables and anything shaped like a Slack token, a Socket Mode ticket or a
response URL, wherever they appear (a URL in an exception, a repr of a request).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from urllib.parse import unquote, urlsplit

SECRET_ENV = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN")
# Secrets that are not in the environment, by their shape: Slack tokens, the ticket of a Socket Mode URL
# (whoever holds it may connect as the app), the path of a response URL or webhook (whoever holds it may post).
SECRET_SHAPES = re.compile(r"\b(?:xox[a-z]|xapp)-[A-Za-z0-9-]+|(?<=[?&]ticket=)[^&\s\"']+"
                           r"|(?<=hooks\.slack\.com/)[^\s\"']+")
REDACTED = "[redacted]"


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: list[str] | None = None):
        super().__init__()
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets or [] if len(s) >= 6}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(self._scrub(fields))
        else:
            line["msg"] = self.redact(record.getMessage())
        if record.exc_info:
            line["exc"] = self.redact(self.formatException(record.exc_info))
        # Redacted before json.dumps: it escapes quotes, backslashes and non-ASCII, and then a secret would not match.
        return json.dumps(line)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return SECRET_SHAPES.sub(REDACTED, text)

    def _scrub(self, value):
        if isinstance(value, dict):
            return {str(k): self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub(v) for v in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.redact(str(value))


def secrets_from_env(env=None) -> list[str]:
    env = os.environ if env is None else env
    found = [env[name] for name in SECRET_ENV if env.get(name)]
    password = urlsplit(env.get("REDIS_URL") or "").password  # as written in the URL: maybe percent-encoded
    return found + ([password, unquote(password)] if password else [])


def configure(level: int = logging.INFO, stream=None) -> None:
    """Every logger, RQ's included, through one JSON handler (stderr unless ``stream`` is given)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets_from_env()))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for name in ("meshbot.audit", "rq.worker"):  # loggers that may have been given handlers of their own
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
