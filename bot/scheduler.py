"""`meshbot scheduler`: fire digests on their cron schedules. A firing only enqueues a digest job.

APScheduler 3 (BackgroundScheduler) keeps the schedules in Redis (its RedisJobStore),
so a restart knows when each schedule last fired. The schedules themselves come from
the config file and from `/mesh digest subscribe` (bot.schedules); every SYNC_SECONDS
the job store is brought in line with them, leaving unchanged schedules alone so
their next run time survives.

Exactly one digest per firing, even with two schedulers on the same Redis: APScheduler
3 does not lock its job store between processes, so both may see a firing as due.
Each firing first takes ``SET meshbot:digest:fired:<schedule>:<fire time> NX EX``; only
the scheduler that got it enqueues (and the job id derives from the same key, so RQ's
unique enqueue would refuse a second job too).

Firings missed while no scheduler ran: a schedule whose fire time passed less than
MISFIRE_GRACE_SECONDS ago fires when a scheduler comes back; several missed firings of
one schedule are coalesced into one digest (the latest); older ones are skipped and logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from datetime import UTC

import redis as redis_lib
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.redis import RedisJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED

from bot import logs
from bot import queue as jobqueue
from bot.config import Secrets, load_config
from bot.schedules import SUBSCRIPTIONS, Schedule, all_schedules, digest_payload

log = logging.getLogger("meshbot.scheduler")
JOBS_KEY = "meshbot:scheduler:jobs"
RUN_TIMES_KEY = "meshbot:scheduler:run_times"
STORE = "digests"
MISFIRE_GRACE_SECONDS = 3600
LOCK_SECONDS = 2 * MISFIRE_GRACE_SECONDS  # a firing can be claimed at most this late, so the lock outlives it
SYNC_SECONDS = 15  # how soon a new subscription reaches the job store


def fire(schedule: dict, scheduled: str = "", queue=None) -> str | None:
    """One firing of one schedule: enqueue its digest job unless another scheduler already did.

    ``scheduled`` is the firing's fire time (UTC, ISO 8601) and ``queue`` the RQ queue, both given
    by FiringExecutor at each run (the defaults only satisfy APScheduler's signature check when
    the job is stored); returns the job id, or None.
    """
    lock = f"meshbot:digest:fired:{schedule['id']}:{scheduled}"
    if schedule.get("by") and not queue.connection.hexists(SUBSCRIPTIONS, schedule["id"]):
        return None  # unsubscribed since the last sync
    if not queue.connection.set(lock, f"{socket.gethostname()}:{os.getpid()}", nx=True, ex=LOCK_SECONDS):
        log.info("digest %s at %s: another scheduler fired it", schedule["id"], scheduled)
        return None
    try:
        job_id, _ = jobqueue.submit(queue, digest_payload(Schedule.from_json(schedule), scheduled), lock)
    except jobqueue.QueueDown:
        queue.connection.delete(lock)  # not enqueued: let another scheduler (or a retry) have it
        raise
    log.info("digest %s at %s: enqueued %s", schedule["id"], scheduled, job_id)
    return job_id


class _Stamped:
    """A job as APScheduler's run_job sees it, with extra keyword arguments for this run only."""

    def __init__(self, job, **extra):
        self._job, self.kwargs = job, {**job.kwargs, **extra}

    def __getattr__(self, name):
        return getattr(self._job, name)

    def __str__(self):
        return str(self._job)


class FiringExecutor(ThreadPoolExecutor):
    """Hands ``fire`` its fire time and the queue: APScheduler 3 does not tell a job when it was due,
    and the once-per-firing lock is keyed by it. Coalescing leaves one run time per submission."""

    def __init__(self, queue):
        super().__init__(max_workers=4)
        self.queue = queue

    def _do_submit_job(self, job, run_times):
        scheduled = run_times[-1].astimezone(UTC).isoformat()
        super()._do_submit_job(_Stamped(job, scheduled=scheduled, queue=self.queue), run_times)


class DigestScheduler(BackgroundScheduler):
    def _process_jobs(self):
        # APScheduler 3's loop looks for due jobs once more after shutdown(): a firing due then
        # would be marked done in the store with no executor left to run it, and so lost.
        return None if self.state == STATE_STOPPED else super()._process_jobs()


def build_scheduler(connection) -> DigestScheduler:
    store = RedisJobStore(jobs_key=JOBS_KEY, run_times_key=RUN_TIMES_KEY, connection_pool=connection.connection_pool)
    return DigestScheduler(
        jobstores={STORE: store}, executors={"default": FiringExecutor(jobqueue.queue(connection))},
        job_defaults={"coalesce": True, "misfire_grace_time": MISFIRE_GRACE_SECONDS, "max_instances": 1},
        timezone=UTC)


def sync(scheduler, schedules: list[Schedule]) -> None:
    """Make the job store hold exactly ``schedules``; an unchanged schedule keeps its next run time."""
    wanted = {s.id: s for s in schedules}
    for job in scheduler.get_jobs(jobstore=STORE):
        if job.id not in wanted:
            with contextlib.suppress(JobLookupError):  # another scheduler removed it first
                scheduler.remove_job(job.id, STORE)
        elif job.kwargs.get("schedule") == wanted[job.id].to_json():
            del wanted[job.id]
    for s in wanted.values():
        scheduler.add_job(fire, s.trigger(), id=s.id, name=f"digest {s.id} to {s.channel}",
                          kwargs={"schedule": s.to_json()}, jobstore=STORE, replace_existing=True)


def main(args) -> int:
    logs.configure()
    config, secrets = load_config(), Secrets.from_env()
    connection = jobqueue.connect(secrets.redis_url, timeout=10)
    scheduler = build_scheduler(connection)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    scheduler.start(paused=True)  # drop removed schedules before any missed firing of theirs runs
    try:
        sync(scheduler, all_schedules(config, connection))
        scheduler.resume()
        log.info("scheduler running: %d schedules", len(scheduler.get_jobs(jobstore=STORE)))
        while not stop.wait(SYNC_SECONDS):
            try:
                sync(scheduler, all_schedules(config, connection))
            except redis_lib.RedisError as exc:  # APScheduler retries the store on its own; so do we
                log.warning("could not sync schedules: %s", exc)
    except KeyboardInterrupt:
        pass
    finally:
        scheduler.shutdown(wait=True)
    return 0
