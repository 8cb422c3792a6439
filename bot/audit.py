"""The audit log: one JSON line per command, click or mention, through the logging module.

Only identifiers and the command text go in: never a token, a signing secret or a payload.
"""

from __future__ import annotations

import json
import logging
import sys

audit_log = logging.getLogger("meshbot.audit")


def record(origin, what: str, outcome: str, job: str | None = None, **extra) -> None:
    line = {"who": origin.user, "user_name": origin.user_name or None, "where": origin.channel,
            "channel_name": origin.channel_name or None, "team": origin.team or None, "via": origin.source,
            "what": what, "outcome": outcome, "job": job, **extra}
    audit_log.info(json.dumps({k: v for k, v in line.items() if v is not None}, sort_keys=True))


def configure(level: int = logging.INFO) -> None:
    """Process-wide logging: audit lines are bare JSON, everything else is prefixed."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    audit = logging.StreamHandler(sys.stderr)
    audit.setFormatter(logging.Formatter("%(message)s"))
    audit_log.handlers[:] = [audit]
    audit_log.propagate = False
