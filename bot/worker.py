"""`meshbot worker`: run queued jobs (RQ), recovering quickly from a worker that died mid-job.

RQ notices a dead worker's job only when its heartbeat has lapsed: by default
that is 60 s after the last heartbeat, checked at best every 10 minutes. Here a
running job heartbeats every 5 s, lapses 10 s after the last one, and every
worker looks for lapsed jobs every 5 s; a lapsed job is re-queued (RQ's Retry)
and run again from the start, and bot.thread keeps it from posting twice.
Measured end to end over 18 SIGKILLs of busy workers with their horses: answered
16.6 s after the kill (median), 20.1 s at most (bench/README.md, "Recovery").

SIGTERM (what Kubernetes sends to stop a pod) is RQ's warm shutdown: the worker
finishes the job in hand, then exits 0; only the parent gets the signal, so the
work-horse is left alone (deploy/ gives it terminationGracePeriodSeconds: 360,
the job timeout: bot.queue.job_timeout()). With --health-port the worker also serves /healthz, /readyz
and /metrics (bot.metrics explains why the worker keeps its metrics in files).

Redis going away does not end the process. RQ's own loop waits out a Redis that is down only while it
dequeues; anywhere else (a heartbeat, its maintenance, start-up) it quits. Exiting then would have the pod
restarted at once, again and again while Redis is down: a crash loop, each restart paying the start-up
(the guide index) again. So ``main`` waits for Redis with exponential back-off and jitter (RECONNECT_*),
then starts a fresh RQ worker on it; SIGTERM during the wait exits 0 at once.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time

import redis
from rq import Worker
from rq.serializers import JSONSerializer

from bot import jobs, logs, metrics
from bot import queue as jobqueue
from bot.config import Secrets

log = logging.getLogger("meshbot.worker")
HEARTBEAT_SECONDS = 5
HEARTBEAT_GRACE = 10  # RQ's is 60 s: a lapsed heartbeat is how a dead worker is found
MAINTENANCE_SECONDS = 5
WORKER_TTL = 20  # also sets how long the idle worker blocks on Redis (ttl - 15 s) between maintenance
RECONNECT_FIRST, RECONNECT_MOST = 0.5, 30.0  # seconds between attempts to reach Redis again: doubling, capped
STEADY_SECONDS = 60.0  # a worker that ran this long had a working Redis: the next outage starts from the shortest


class MeshWorker(Worker):
    """RQ's forking worker, with a short heartbeat lease so abandoned jobs come back within seconds."""

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        remaining = (job.timeout - working_time) if job.timeout and job.timeout > 0 else self.job_monitoring_interval
        return int(min(remaining, self.job_monitoring_interval)) + HEARTBEAT_GRACE

    def unsubscribe(self):
        """RQ's, in an order that cannot hang the shutdown. RQ unsubscribes, then stops the pub/sub thread; since
        redis-py 8, stop() joins that thread without a timeout, and a thread that has just read the unsubscribe reply
        waits out its 60 s poll for a new subscription first: longer than Kubernetes' grace period (seen under load
        in tests/bot/test_health_metrics.py). Here the thread is told to stop before the reply wakes it."""
        if self.pubsub_thread:
            self.log.info("Worker %s: unsubscribing from channel %s", self.name, self.pubsub_channel_name)
            stop_without_waiting(self.pubsub_thread)
            self.pubsub.unsubscribe()
            self.pubsub_thread.join(timeout=1)
            self.pubsub.close()

    def prepare_execution(self, job):
        """Mark the job started here, as its lease is taken, not only once the work-horse gets to it.

        RQ's lease sweep re-queues only jobs whose status is "started"; a worker killed in the moment between
        taking the lease and its horse setting that status would leave the job to RQ's slower sweep of its
        intermediate queue (a minute, then more), measured at 77 s instead of 15 s (bench/README.md)."""
        with self.connection.pipeline() as pipeline:
            job.prepare_for_execution(self.name, pipeline=pipeline)
            pipeline.execute()
        return super().prepare_execution(job)


def stop_without_waiting(thread) -> None:
    """Clear a redis-py PubSubWorkerThread's running flag; it is a daemon and ends at its next message or poll."""
    try:
        thread.stop(timeout=0)  # redis-py 8+: stop() would otherwise join with no timeout
    except TypeError:
        thread.stop()  # before 8: stop() takes no timeout and does not wait


def build_worker(connection) -> MeshWorker:
    return MeshWorker([jobqueue.queue(connection)], connection=connection, serializer=JSONSerializer,
                      worker_ttl=WORKER_TTL, maintenance_interval=MAINTENANCE_SECONDS,
                      job_monitoring_interval=HEARTBEAT_SECONDS)


def main(args) -> int:
    logs.configure()
    metrics.enable_multiprocess()  # before any metric is used, and before the first work-horse forks
    secrets = Secrets.from_env()
    connection = jobqueue.connect(secrets.redis_url, timeout=WORKER_TTL + 10)
    jobs.context()  # config, guide index and Slack client, loaded once before jobs fork from this process
    if args.health_port:
        # Its own connection with the short timeout: a probe must not wait on the worker's 30 s one.
        server = _serve_health(jobqueue.connect(secrets.redis_url), args.health_host, args.health_port)
        log.info("health and metrics on http://%s:%s/healthz", args.health_host, server.port)
    return work(connection, burst=args.burst)


def work(connection, burst: bool = False, stopping: threading.Event | None = None) -> int:
    """Run RQ workers on ``connection`` until stopped (SIGTERM) or, with ``burst``, the queue is empty;
    a worker that quits because Redis went away is replaced once Redis answers again (see the module doc)."""
    stopping = stopping or threading.Event()
    attempt = 0
    while not stopping.is_set():
        started, worker = time.monotonic(), None
        try:
            connection.ping()
            worker = build_worker(connection)
            worker.work(burst=burst, logging_level="INFO")
            error = "the worker quit"  # RQ logged why; most often a Redis call outside its dequeue
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if worker is not None:
            if getattr(worker, "pubsub_thread", None) is not None:  # else it keeps retrying Redis on its own
                stop_without_waiting(worker.pubsub_thread)
            if burst or worker._shutdown_requested_date is not None:  # SIGTERM, whether idle or busy
                return 0
        if time.monotonic() - started >= STEADY_SECONDS:
            attempt = 0
        pause = random.uniform(0.5, 1.0) * min(RECONNECT_MOST, RECONNECT_FIRST * 2 ** attempt)
        attempt += 1
        log.warning("Redis unavailable (%s); reconnecting in %.1f s", error, pause)
        _wait(stopping, pause)
    log.info("stopped")
    return 0


def _wait(stopping: threading.Event, seconds: float) -> None:
    """Sleep ``seconds`` unless SIGTERM (or SIGINT) comes first; RQ's handlers are not installed between workers."""
    def stop(signum, frame):
        stopping.set()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)} \
        if threading.current_thread() is threading.main_thread() else {}
    try:
        stopping.wait(seconds)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _serve_health(connection, host: str, port: int):
    from bot.serve import BackgroundServer, web_application

    async def application():
        return web_application(None, connection)

    return BackgroundServer(application, host, port)
