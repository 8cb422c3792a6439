"""The bot's own Prometheus metrics, and the text served at /metrics by `meshbot serve` and `meshbot worker`.

    meshbot_commands_total{via,command,outcome}   every audited command, click and mention (bot.audit)
    meshbot_jobs{state}                           queued / running / failed, read from RQ at scrape time
    meshbot_redis_up                              whether that read worked
    meshbot_check_duration_seconds{check}         how long each check took to answer (Report.timings)
    meshbot_slack_api_errors_total{method,error}  Web API calls that failed (bot.app.MeteredWebClient)
    meshbot_slack_api_retries_total{reason}       retries slack_sdk made (ratelimited, server_error, connection)
    meshbot_undelivered_answers_total{kind,cause} jobs whose answer could not reach Slack in the retry budget

Why multiprocess mode in the worker: RQ's worker forks a work-horse per job, and a
job's Slack calls and check timings happen in that horse, so an in-memory registry
would lose them when the horse exits. prometheus_client's multiprocess mode keeps
each process's values in an mmap'd file and sums the files at scrape time. Its
default of one file set per pid would grow by one set per job, so every horse of
a worker writes the same "horse" files: RQ runs one horse at a time per worker, so
they never write at once, and each new horse carries on from the last one's totals.
The job gauges need none of this: Redis already holds them. The web process and
the demo do not fork and keep the ordinary in-memory registry.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import tempfile

import redis as redis_lib
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
COMMAND_WORDS = frozenset({"check", "ask", "clusters", "list", "digest", "help"})

# Every metric has labels, so no value exists until first used: enable_multiprocess() can still pick the storage.
COMMANDS = Counter("meshbot_commands", "Slack commands, clicks and mentions, by outcome", ["via", "command", "outcome"])
CHECK_SECONDS = Histogram("meshbot_check_duration_seconds", "Seconds until a check could answer, by check", ["check"],
                          buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30))
SLACK_ERRORS = Counter("meshbot_slack_api_errors", "Slack Web API calls that failed, by method and error",
                       ["method", "error"])
SLACK_RETRIES = Counter("meshbot_slack_api_retries", "Slack Web API calls retried by slack_sdk, by reason", ["reason"])
UNDELIVERED = Counter("meshbot_undelivered_answers", "Jobs whose answer Slack never took, within the retry budget",
                      ["kind", "cause"])

_multiprocess_dir: str | None = None


def count_command(via: str, what: str, outcome: str) -> None:
    word = what.split()[0] if what.strip() else ""
    COMMANDS.labels(via, word if word in COMMAND_WORDS else "other", outcome).inc()


def observe_checks(timings: dict[str, float]) -> None:
    """A check run's Report.timings (seconds per check id)."""
    for check, seconds in timings.items():
        CHECK_SECONDS.labels(check).observe(seconds)


def enable_multiprocess() -> str:
    """Keep this process's metrics, and its work-horses', in files (see the module docstring); returns the dir.

    Call before any metric is used. PROMETHEUS_MULTIPROC_DIR, when set, names the dir; otherwise a fresh one
    under the temporary directory is made (and removed at exit).
    """
    global _multiprocess_dir
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="meshbot-metrics-")
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path  # read by prometheus_client when it opens a file
    main = os.getpid()
    for stale in glob.glob(os.path.join(path, f"*_*-{main}.db")):  # a restarted container reuses its pid
        os.remove(stale)
    values.ValueClass = values.MultiProcessValue(lambda: f"main-{main}" if os.getpid() == main else f"horse-{main}")
    _multiprocess_dir = path
    return path


def exposition(connection) -> bytes:
    """Everything /metrics serves: this process's (or this worker's and its horses') metrics, then the queue's."""
    if _multiprocess_dir:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=_multiprocess_dir)
    else:
        registry = REGISTRY
    queue = CollectorRegistry()
    queue.register(QueueCollector(connection))
    return generate_latest(registry) + generate_latest(queue)


class QueueCollector:
    """Jobs by state, read from RQ's queue and registries when scraped (the same from every process)."""

    def __init__(self, connection):
        self.connection = connection

    def collect(self):
        from bot import queue as jobqueue

        up = GaugeMetricFamily("meshbot_redis_up", "Whether Redis answered this scrape")
        jobs = GaugeMetricFamily("meshbot_jobs", "Jobs in the queue, by state", labels=["state"])
        try:
            q = jobqueue.queue(self.connection)
            # cleanup=False: a scrape only reads; moving expired jobs is the workers' maintenance.
            counts = {"queued": q.count, "running": q.started_job_registry.get_job_count(cleanup=False),
                      "failed": q.failed_job_registry.get_job_count(cleanup=False)}
        except redis_lib.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for state, n in counts.items():
            jobs.add_metric([state], n)
        yield jobs
