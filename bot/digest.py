"""The digest job: check a channel's clusters concurrently, compare with its previous digest, post.

What changed is kept per channel in Redis (``meshbot:digest:state:<channel>``, one field
per cluster): the last digest's findings (fail, error, warn), each with the time it was
first seen, so "still failing for 3 d" counts from the first digest that saw it. Times
are the firing's scheduled time, not the clock, so a late or re-run job tells the same story.
The state is written after posting: a job re-run after a crash compares with the same
previous digest, and its Thread updates what was already posted instead of posting again.

A cluster that no check could reach (every result an error with the same cause) is
reported as unreachable, with the cause, and keeps its previous findings until it
can be read again.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from bot import access, metrics, render, suppressions
from bot.findings import FINDINGS
from bot.findings import post as post_findings
from checks.errors import AccessError, Unreachable
from checks.model import Status
from checks.runner import Report, UnknownTarget, select
from checks.service import run_on_cluster, unreachable_report

# Clusters checked at once in one job (threads: each run has its own event loop). Measured over 20 simulated
# clusters at +20 ms a request on 2 cores: 4.1 s one at a time, 2.5-3.0 s five to twenty at a time (CPU-bound
# past that). Above five it mostly helps when clusters time out, which then overlap.
MAX_PARALLEL = 10
STATE_KEEP = 90 * 24 * 3600


@dataclass
class ClusterDigest:
    name: str
    report: Report
    unreachable: str | None = None  # the cause, when the cluster could not be checked at all


@dataclass(frozen=True)
class Change:
    cluster: str
    check: str
    status: str
    since: float | None = None  # still failing: when it was first seen
    was: str | None = None  # a finding whose status changed (warn → fail): the old status
    code: str = ""  # a configuration finding (one of several of its check): its code and object
    object: str = ""
    key: str = ""  # Result.key

    @property
    def name(self) -> str:
        return f"{self.cluster}:{self.check}" + (f":{self.code} {self.object}" if self.code else "")


@dataclass
class Changes:
    new: list[Change] = field(default_factory=list)
    resolved: list[Change] = field(default_factory=list)
    still: list[Change] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)  # became unreachable since the previous digest
    reachable_again: list[str] = field(default_factory=list)
    first: list[str] = field(default_factory=list)  # clusters this channel never had a digest of
    previous_at: float | None = None
    unchanged_config: int = 0  # configuration findings still there: counted, not listed (they can be many)
    suppressed: list[Change] = field(default_factory=list)  # findings suppressed since the previous digest

    @property
    def any(self) -> bool:
        return bool(self.new or self.resolved or self.unreachable or self.reachable_again or self.first)


def check_clusters(config, names: list[str], checks, origin: dict | None = None,
                   parallel: int = MAX_PARALLEL, redis=None) -> list[ClusterDigest]:
    """Run ``checks`` on every cluster named, ``parallel`` at a time (with the suppressions kept in ``redis``)."""
    with ThreadPoolExecutor(max(1, min(parallel, len(names)))) as pool:
        return list(pool.map(lambda name: _check_one(config, name, checks, origin, redis), names))


def _check_one(config, name: str, checks, origin: dict | None, redis=None) -> ClusterDigest:
    cluster = config.clusters.get(name)
    if cluster is None:
        return _unreachable(name, checks, "this cluster is no longer configured")
    if origin and origin.get("user") and not access.allowed(cluster, origin["user"], origin["channel"],
                                                            origin.get("user_name", ""),
                                                            origin.get("channel_name", "")):
        return _unreachable(name, checks, "the subscriber may no longer check this cluster from this channel",
                            cluster.istio_namespace)
    try:
        report = run_on_cluster(name, cluster, checks, config.checks,
                                suppressions=suppressions.for_cluster(cluster, name, redis))
        metrics.observe_checks(report.timings)
    except AccessError as exc:  # e.g. a kubeconfig that does not load
        return _unreachable(name, checks, str(exc), cluster.istio_namespace)
    if report.unreachable:
        return _unreachable(name, checks, report.unreachable, cluster.istio_namespace)
    return ClusterDigest(name, report)


def _unreachable(name: str, checks, cause: str, namespace: str = "istio-system") -> ClusterDigest:
    return ClusterDigest(name, unreachable_report(name, checks, Unreachable(cause), namespace), cause)


def compare(previous: dict[str, dict], digests: list[ClusterDigest], at: float) -> tuple[Changes, dict[str, dict]]:
    """What changed since ``previous`` (cluster → state), and the state to keep for next time.

    Findings are keyed by Result.key: a check's id, or for a configuration finding (one of several of its
    check) its check, code and object. Configuration findings are news only when they appear or go: one that
    stays is counted, not listed, and one suppressed in between is neither new nor resolved. Only checks that
    ran can be resolved: the findings of the others are kept, and clusters not in ``digests`` are left out of
    the new state (State.save keeps theirs).
    """
    changes = Changes(previous_at=max((p["at"] for p in previous.values()), default=None))
    state: dict[str, dict] = {}
    for d in digests:
        before = previous.get(d.name)
        before_findings = before["findings"] if before else {}
        if before is None:
            changes.first.append(d.name)
        if d.unreachable:
            if before is None or before["reachable"]:
                changes.unreachable.append(d.name)
            state[d.name] = {"at": at, "reachable": False, "findings": before_findings}
            continue
        if before is not None and not before["reachable"]:
            changes.reachable_again.append(d.name)
        findings, suppressed = {}, {}
        for r in d.report.results:
            if r.code and r.objects and r.status is Status.SKIP and r.summary.startswith("suppressed by"):
                suppressed[r.key] = r
            if r.status not in FINDINGS:
                continue
            seen = before_findings.get(r.key)
            since = seen["since"] if seen else at
            findings[r.key] = {"status": r.status.value, "since": since}
            about = {}
            if r.code:
                about = {"code": r.code, "object": r.objects[0] if r.objects else ""}
                findings[r.key].update(about, check=r.check)
                about["key"] = r.key
            if seen is None:
                changes.new.append(Change(d.name, r.check, r.status.value, **about))
            elif seen["status"] != r.status.value:
                changes.new.append(Change(d.name, r.check, r.status.value, since, was=seen["status"], **about))
            elif r.code:
                changes.unchanged_config += 1
            else:
                changes.still.append(Change(d.name, r.check, r.status.value, since))
        ran = {r.check for r in d.report.results}
        for key, seen in before_findings.items():
            if key in findings:
                continue
            check = seen.get("check", key)
            gone = Change(d.name, check, seen["status"], seen["since"], code=seen.get("code", ""),
                          object=seen.get("object", ""))
            if key in suppressed:
                changes.suppressed.append(gone)
            elif check in ran:
                changes.resolved.append(gone)
            else:  # not checked this time (a digest of fewer checks): still what the last check of it found
                findings[key] = seen
        state[d.name] = {"at": at, "reachable": True, "findings": findings}
    return changes, state


class State:
    def __init__(self, redis, channel: str):
        self.redis, self.key = redis, f"meshbot:digest:state:{channel}"

    def load(self, clusters: list[str]) -> dict[str, dict]:
        values = self.redis.hmget(self.key, clusters) if clusters else []
        return {name: json.loads(v) for name, v in zip(clusters, values, strict=True) if v}

    def save(self, state: dict[str, dict]) -> None:
        if state:
            with self.redis.pipeline() as p:
                p.hset(self.key, mapping={k: json.dumps(v) for k, v in state.items()}).expire(self.key, STATE_KEEP)
                p.execute()


def digest(ctx, thread, payload: dict, job) -> dict:
    """The "digest" job kind (bot.jobs.KINDS)."""
    at = datetime.fromisoformat(payload["at"]).timestamp()
    names = payload["clusters"] or list(ctx.config.clusters)
    what = "digest" + (f" of {', '.join(names)}" if payload["clusters"] else "")
    try:
        chosen = select(payload["checks"])
    except UnknownTarget as exc:
        thread.start(render.could_not_run(what, str(exc)))
        return {"error": str(exc)}
    if not names:
        thread.start(render.could_not_run(what, "no cluster is configured"))
        return {"error": "no cluster"}
    digests = check_clusters(ctx.config, names, chosen, payload["origin"], redis=job.connection)
    state = State(job.connection, payload["channel"])
    changes, after = compare(state.load(names), digests, at)
    posted = changes.any or not payload.get("quiet")
    if posted:
        thread.start(render.digest(digests, changes, at, payload["schedule"]))
        for d in digests:
            if d.unreachable:
                thread.reply(f"{d.name}:unreachable", render.unreachable(d.name, d.unreachable))
                continue
            # configuration findings are posted when they are new; other findings every time
            fresh = {c.key for c in changes.new if c.cluster == d.name}
            post_findings(thread, ctx.index, [r for r in d.report.results if not r.code or r.key in fresh],
                          cluster=d.name)
    state.save(after)
    return {"posted": posted, "clusters": {d.name: d.report.counts for d in digests},
            "unreachable": [d.name for d in digests if d.unreachable],
            "new": [c.name for c in changes.new], "resolved": [c.name for c in changes.resolved],
            "still": [c.name for c in changes.still], "unchanged_config": changes.unchanged_config,
            "suppressed": [c.name for c in changes.suppressed]}
