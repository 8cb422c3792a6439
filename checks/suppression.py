"""Suppressed findings: a finding matched by code and object stays in the report, as `skip`, saying who and until when.

Suppressions come from the cluster's config and from Slack (bot.suppressions keeps those in Redis); this module
only applies them, so the CLI, the check job and the digest show the same thing. Nothing disappears: the result
keeps its evidence and fix, and its summary says what was suppressed and what it was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from checks.model import Result, Status

SUPPRESSIBLE = (Status.FAIL, Status.WARN, Status.ERROR)


@dataclass(frozen=True)
class Suppression:
    code: str  # "IST0101"
    object: str  # "VirtualService default/reviews", as the finding names it
    by: str  # who: a Slack user id, or "config"
    reason: str = ""
    until: float | None = None  # epoch seconds; None: until lifted (config only)
    at: float | None = None
    by_name: str = ""

    @property
    def key(self) -> str:
        return f"{self.code}|{self.object}"

    def active(self, now: float) -> bool:
        return self.until is None or self.until > now

    def matches(self, result: Result) -> bool:
        return result.code == self.code and bool(result.objects) and result.objects[0] == self.object

    @property
    def who(self) -> str:
        if self.by == "config":
            return "the cluster's config"
        return f"<@{self.by}>" if self.by.startswith(("U", "W")) else self.by

    def until_text(self) -> str:
        return "until lifted" if self.until is None else f"until {when(self.until)}"


def when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def apply(results: Iterable[Result], suppressions: Sequence[Suppression], now: float) -> list[Result]:
    """``results`` with each finding that an active suppression matches turned into a `skip` that says so."""
    active = {s.key: s for s in suppressions if s.active(now)}
    out = []
    for r in results:
        s = active.get(f"{r.code}|{r.objects[0]}") if r.code and r.objects else None
        if s is None or r.status not in SUPPRESSIBLE:
            out.append(r)
            continue
        why = f" ({s.reason})" if s.reason else ""
        summary = (f"suppressed by {s.who}: {s.code} {s.object} {s.until_text()}{why}; "
                   f"was {r.status.value.upper()}: {r.summary}")
        out.append(dataclasses.replace(r, status=Status.SKIP, summary=summary))
    return out
