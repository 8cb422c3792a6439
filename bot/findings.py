"""Findings: the results that get a reply of their own, with the guide's excerpt (check and digest jobs)."""

from __future__ import annotations

import knowledge
from bot import render
from checks.model import Status

FINDINGS = (Status.FAIL, Status.ERROR, Status.WARN)


def post(thread, index: knowledge.Index, results, cluster: str | None = None, suppress_on: str | None = None) -> None:
    """Reply in ``thread`` once per finding in ``results``; ``cluster`` names it, for threads of several;
    a configuration finding gets a button to suppress it on ``suppress_on`` (default: ``cluster``)."""
    for r in results:
        if r.status in FINDINGS:
            section = index.section(r.section)
            excerpt = knowledge.excerpt_for_section(index, r.section, prose=True)  # the fix is the check's
            thread.reply(f"{cluster}:{r.key}" if cluster else r.key,  # r.key: one reply per finding
                         render.finding(r, excerpt, r.url or (section.url if section else None), cluster=cluster,
                                        suppress_on=suppress_on or cluster))
