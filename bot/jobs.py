"""The worker's side: ``run(payload)`` is the one job function; payload["kind"] picks the work.

Kinds: "check" (run checks, answer in a thread), "ask" (answer from the
guides) and "digest" (bot.digest: several clusters, what changed, for a schedule
or `/mesh digest now`). Each posts through the same Thread, so each inherits
idempotent posting and retries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache

import knowledge
from bot import access, metrics, render
from bot import digest as digests
from bot.app import web_client
from bot.config import Config, ConfigurationError, Secrets, load_config
from bot.thread import Thread
from checks.errors import AccessError
from checks.model import Status
from checks.runner import UnknownTarget, select
from checks.service import run_on_cluster, unreachable_report
from handlers.grammar import CheckRequest

log = logging.getLogger("meshbot.jobs")
FINDINGS = (Status.FAIL, Status.ERROR, Status.WARN)
INCIDENT_KEEP = 7 * 24 * 3600


@dataclass(frozen=True)
class Context:
    config: Config
    index: knowledge.Index
    client: object  # slack_sdk.WebClient


@cache
def context() -> Context:
    """Loaded once per worker: `meshbot worker` calls it before the first fork, so jobs share it."""
    config = load_config()
    return Context(config, knowledge.load_index(config.guides), web_client(Secrets.from_env()))


def run(payload: dict) -> dict:
    from rq import get_current_job

    job = get_current_job()
    origin = payload["origin"]
    thread = Thread(context().client, job.connection, job.id, origin["channel"], origin.get("thread_ts"))
    return KINDS[payload["kind"]](context(), thread, payload, job)


def check(ctx: Context, thread: Thread, payload: dict, job) -> dict:
    command = CheckRequest(tuple(payload["targets"]), payload["cluster"]).text
    try:  # the config may have changed since the command was accepted
        name, cluster = ctx.config.cluster(payload["cluster"])
        chosen = select(payload["targets"])
    except (ConfigurationError, UnknownTarget) as exc:
        thread.start(render.could_not_run(command, str(exc)))
        return {"error": str(exc)}
    thread.start(render.running(payload["targets"], name, again=thread.started))
    try:
        report = run_on_cluster(name, cluster, chosen, ctx.config.checks)
        metrics.observe_checks(report.timings)
    except AccessError as exc:  # includes a kubeconfig that does not load
        report = unreachable_report(name, chosen, exc, cluster.istio_namespace)
    for result in report.results:
        if result.status in FINDINGS:
            section = ctx.index.section(result.section)
            excerpt = knowledge.excerpt_for_section(ctx.index, result.section)
            thread.reply(result.check, render.finding(result, excerpt, section.url if section else None))
    quiet = [r for r in report.results if r.status not in FINDINGS]
    if quiet:
        thread.reply("passing", render.passing(quiet))
    thread.finish(render.finished(report, command))
    return {"counts": report.counts, "duration_ms": report.duration_ms}


def ask(ctx: Context, thread: Thread, payload: dict, job) -> dict:
    origin, question = payload["origin"], payload["question"]
    matches = ctx.index.ask(question)
    if origin["source"] == "incident":
        # Unasked-for answers: only a confident one, and once per thread (a re-run of this job may still post).
        if not matches or matches[0].score < ctx.config.incident.min_score:
            return {"answered": False}
        key = f"meshbot:incident:{origin['channel']}:{origin['thread_ts']}"
        job.connection.set(key, job.id, nx=True, ex=INCIDENT_KEEP)
        if job.connection.get(key).decode() != job.id:
            return {"answered": False}
    clusters = access.usable_clusters(ctx.config, origin["user"], origin["channel"], origin.get("user_name", ""),
                                      origin.get("channel_name", ""))
    top_level = thread.thread_ts is None  # `/mesh ask`: the answer starts its own thread
    messages = render.answer(question, matches, clusters, asker=origin["user"] if top_level else None)
    if top_level:
        thread.start(messages[0])
        messages = messages[1:]
    thread.reply("answer", messages)
    return {"answered": bool(matches), "sections": [m.section for m in matches]}


KINDS = {"check": check, "ask": ask, "digest": digests.digest}
