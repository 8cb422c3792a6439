"""The audit log: one JSON line per command, click or mention, through the logging module.

Only identifiers and the command text go in: never a token, a signing secret or a payload.
Every line also counts in meshbot_commands_total, so the metric and the log cannot disagree.
"""

from __future__ import annotations

import json
import logging

from bot import metrics

audit_log = logging.getLogger("meshbot.audit")


def record(origin, what: str, outcome: str, job: str | None = None, **extra) -> None:
    line = {"who": origin.user, "user_name": origin.user_name or None, "where": origin.channel,
            "channel_name": origin.channel_name or None, "team": origin.team or None, "via": origin.source,
            "what": what, "outcome": outcome, "job": job, **extra}
    line = {k: v for k, v in line.items() if v is not None}
    metrics.count_command(origin.source, what, outcome)
    # The message is the JSON too, for handlers that print only messages (pytest's caplog).
    audit_log.info(json.dumps(line, sort_keys=True), extra={"fields": line})
