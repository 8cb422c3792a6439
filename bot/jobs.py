"""The worker's side: ``run(payload)`` is the one job function; payload["kind"] picks the work.

Kinds: "check" (run checks, answer in a thread), "ask" (answer from the
guides) and "digest" (bot.digest: several clusters, what changed, for a schedule
or `/mesh digest now`). Each posts through the same Thread, so each inherits
idempotent posting and retries.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cache

from slack_sdk.errors import SlackApiError

import knowledge
from bot import access, findings, metrics, render, slackretry, suppressions
from bot import digest as digests
from bot.app import web_client
from bot.config import Config, ConfigurationError, Secrets, load_config
from bot.thread import Thread
from checks.errors import AccessError
from checks.runner import UnknownTarget, select
from checks.service import run_on_cluster, unreachable_report
from checks.successors import successor_groups
from handlers.grammar import CheckRequest

log = logging.getLogger("meshbot.jobs")
audit_log = logging.getLogger("meshbot.audit")
INCIDENT_KEEP = 7 * 24 * 3600
# Slack errors a re-run cannot change (the bot was removed, the channel archived, the token revoked): no retry.
PERMANENT_SLACK_ERRORS = frozenset({"not_in_channel", "channel_not_found", "is_archived", "invalid_auth",
                                    "account_inactive", "token_revoked"})


@dataclass(frozen=True)
class Context:
    config: Config
    index: knowledge.Index
    client: object  # slack_sdk.WebClient


@cache
def context() -> Context:
    """Loaded once per worker: `meshbot worker` calls it before the first fork, so jobs share it."""
    config = load_config()
    client = slackretry.outlasting(web_client(Secrets.from_env()))
    return Context(config, knowledge.load_index(config.guides), client)


def run(payload: dict) -> dict:
    from rq import get_current_job

    job = get_current_job()
    origin = payload["origin"]
    thread = Thread(context().client, job.connection, job.id, origin["channel"], origin.get("thread_ts"))
    try:
        with slackretry.budget():
            return KINDS[payload["kind"]](context(), thread, payload, job)
    except Exception as exc:
        if slackretry.is_transient(exc):
            # Slack stayed away for the whole budget: a re-run now would fail the same way, and so would a notice.
            undelivered(job, payload, exc)
            return {"error": "undelivered", "cause": slackretry.cause(exc)}
        error = exc.response.get("error") if isinstance(exc, SlackApiError) and exc.response is not None else None
        if error not in PERMANENT_SLACK_ERRORS:
            raise
        log.warning("job %s (%s) gave up: Slack answered %s for channel %s", job.id, payload["kind"], error,
                    origin["channel"])
        return {"error": error}


def failed(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ's on_failure (bot.queue.submit): once no retry is left, the parent says the job failed.

    Without it a "Checking…" parent would stay up for good. An unasked-for incident answer says nothing.
    """
    if job.should_retry:  # RQ runs it again
        return
    try:
        payload = job.args[0]
        origin = payload["origin"]
        thread = Thread(context().client, connection, job.id, origin["channel"], origin.get("thread_ts"))
        if origin["source"] == "incident" and not thread.started:
            return
        from rq.timeouts import JobTimeoutException

        reason = (f"it took longer than {job.timeout} s" if isinstance(exc_value, JobTimeoutException)
                  else "it failed (the worker's log has the error)")
        with slackretry.budget():  # a budget of its own: the notice is the job's last word
            thread.start(render.could_not_run(_command(payload), reason))
    except Exception as exc:  # RQ would record this instead of the job's own error
        log.exception("job %s: could not report its failure in Slack", job.id)
        if slackretry.is_transient(exc):
            undelivered(job, job.args[0], exc)


def undelivered(job, payload: dict, exc: BaseException) -> None:
    """A job whose answer Slack never took: say so in the log, the metrics and the audit log, with the cause."""
    cause = slackretry.cause(exc)
    origin = payload.get("origin") or {}
    log.error("job %s (%s): answer not delivered to %s: Slack unavailable for %g s (%s)", job.id, payload["kind"],
              origin.get("channel"), slackretry.budget_seconds(), cause)
    metrics.UNDELIVERED.labels(payload["kind"], cause.split(" ")[0]).inc()
    line = {"who": origin.get("user"), "where": origin.get("channel"), "via": origin.get("source"),
            "what": _command(payload), "outcome": "undelivered", "job": job.id, "cause": cause}
    line = {k: v for k, v in line.items() if v is not None}
    audit_log.info(json.dumps(line, sort_keys=True), extra={"fields": line})


def _command(payload: dict) -> str:
    match payload["kind"]:
        case "check":
            return CheckRequest(tuple(payload["targets"]), payload["cluster"], payload.get("deep", False),
                                payload.get("namespace")).text
        case "ask":
            return f"ask {payload['question']}"
        case _:
            return payload["kind"] + (f" of {', '.join(payload['clusters'])}" if payload.get("clusters") else "")


def check(ctx: Context, thread: Thread, payload: dict, job) -> dict:
    deep = payload.get("deep", False)  # jobs queued before `deep` existed have no such key
    namespace = payload.get("namespace")
    command = CheckRequest(tuple(payload["targets"]), payload["cluster"], deep, namespace).text
    try:  # the config may have changed since the command was accepted
        name, cluster = ctx.config.cluster(payload["cluster"])
        chosen = select(payload["targets"])
    except (ConfigurationError, UnknownTarget) as exc:
        thread.start(render.could_not_run(command, str(exc)))
        return {"error": str(exc)}
    thread.start(render.running(payload["targets"], name, again=thread.started))
    try:
        report = run_on_cluster(name, cluster, chosen, ctx.config.checks, all_pods=deep, focus_namespace=namespace,
                                suppressions=suppressions.for_cluster(cluster, name, job.connection))
        metrics.observe_checks(report.timings)
    except AccessError as exc:  # includes a kubeconfig that does not load
        report = unreachable_report(name, chosen, exc, cluster.istio_namespace)
    groups = successor_groups(report.results, report.istio)
    if groups:  # one line, not a wall of skips
        thread.start(render.superseded(report, payload["targets"], groups, name))
        return {"counts": report.counts, "duration_ms": report.duration_ms}
    findings.post(thread, ctx.index, report.results, suppress_on=name)
    quiet = [r for r in report.results if r.status not in findings.FINDINGS]
    if quiet:
        thread.reply("passing", render.passing(quiet, lift_on=name))
    thread.start(render.finished(report, command))  # the parent exists by now: this updates it
    return {"counts": report.counts, "duration_ms": report.duration_ms}


def ask(ctx: Context, thread: Thread, payload: dict, job) -> dict:
    origin, question = payload["origin"], payload["question"]
    found = ctx.index.answer(question)
    matches = found.matches
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
    messages = render.answer(question, matches, clusters, asker=origin["user"] if top_level else None,
                             suggestions=found.suggestions)
    if top_level:
        thread.start(messages[0])
        messages = messages[1:]
    thread.reply("answer", messages)
    return {"answered": bool(matches), "sections": [m.section for m in matches],
            "suggested": [m.section for m in found.suggestions]}


KINDS = {"check": check, "ask": ask, "digest": digests.digest}
