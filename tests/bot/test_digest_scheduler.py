"""`meshbot scheduler`: APScheduler 3 on its Redis job store, driven by a controlled clock; two schedulers, one digest.

No test waits for a schedule: APScheduler's clock is replaced by one the test sets, or the
job store is given a firing that is already due (as after a scheduler was down).
"""

import os
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import apscheduler.executors.base
import apscheduler.schedulers.base
import pytest
import redis as redis_lib
from apscheduler.events import EVENT_JOB_EXECUTED
from conftest import eventually, redis_url, spawn
from rq.job import Job
from rq.serializers import JSONSerializer

from bot import scheduler as sched
from bot.config import Config
from bot.schedules import Schedule, Subscriptions, fire_times, from_config

pytestmark = pytest.mark.redis_db(13)  # digests: a Redis DB of their own

T0 = datetime(2024, 5, 6, 8, 59, 30, tzinfo=UTC)  # just before a Monday 09:00 firing


@pytest.fixture
def clock(monkeypatch):
    """APScheduler's notion of now (it reads datetime.now in these two modules only)."""
    state = {"now": T0}

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return state["now"].astimezone(tz) if tz else state["now"]

    monkeypatch.setattr(apscheduler.schedulers.base, "datetime", Clock)
    monkeypatch.setattr(apscheduler.executors.base, "datetime", Clock)
    return state


@pytest.fixture
def schedulers(redis):
    made = []

    def build():
        s = sched.build_scheduler(redis_lib.Redis.from_url(redis_url(13)))
        made.append(s)
        return s

    yield build
    for s in made:
        if s.running:
            s.shutdown(wait=True)


def payloads(redis, job_ids):
    return [Job.fetch(j, connection=redis, serializer=JSONSerializer).args[0] for j in job_ids]


def test_two_schedulers_that_both_fire_a_firing_enqueue_one_digest(clock, schedulers, redis, jobs):
    daily = Schedule("daily", "C1", "0 9 * * *", clusters=("prod",))
    a, b = schedulers(), schedulers()
    a.start(paused=True)
    b.start(paused=True)
    sched.sync(a, [daily])
    sched.sync(b, [daily])  # unchanged: b leaves the stored next run time alone
    assert a.get_job("daily", sched.STORE).next_run_time == datetime(2024, 5, 6, 9, 0, tzinfo=UTC)

    # The worst interleaving: neither scheduler records the next run time before both have fired.
    both_fired = threading.Barrier(2, timeout=10)
    for s in (a, b):
        store = s._lookup_jobstore(sched.STORE)
        update = store.update_job
        store.update_job = lambda job, update=update: (both_fired.wait(), update(job))
    results = []
    for s in (a, b):
        s.add_listener(lambda event: results.append(event.retval), EVENT_JOB_EXECUTED)

    firings = fire_times("0 9 * * *", "UTC", T0, 3)
    for n, firing in enumerate(firings, 1):
        clock["now"] = firing + timedelta(seconds=1)
        a.resume() if n == 1 else a.wakeup()
        b.resume() if n == 1 else b.wakeup()
        eventually(lambda n=n: len(results) == 2 * n)
    # every firing ran in both schedulers: one enqueued, the other found the lock taken
    assert results.count(None) == 3 and sorted(filter(None, results)) == sorted(jobs()) and len(jobs()) == 3
    assert [p["at"] for p in payloads(redis, jobs())] == [f.isoformat() for f in firings]


def test_firings_missed_while_down_become_one_digest_within_the_grace_time(clock, schedulers, redis, jobs):
    every_15 = Schedule("q", "C1", "*/15 * * * *")
    s = schedulers()
    s.start(paused=True)
    sched.sync(s, [every_15])
    assert s.get_job("q", sched.STORE).next_run_time == datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
    clock["now"] = datetime(2024, 5, 6, 9, 50, tzinfo=UTC)  # down through 09:00, 09:15, 09:30 and 09:45
    s.resume()
    eventually(lambda: jobs())
    [payload] = payloads(redis, jobs())
    assert payload["at"] == "2024-05-06T09:45:00+00:00"  # coalesced: the latest
    eventually(lambda: s.get_job("q", sched.STORE).next_run_time == datetime(2024, 5, 6, 10, 0, tzinfo=UTC))

    clock["now"] = datetime(2024, 5, 6, 11, 1, tzinfo=UTC)  # 10:00 is more than the grace time ago; 11:00 is not
    s.wakeup()
    eventually(lambda: len(jobs()) == 2)
    assert payloads(redis, jobs())[1]["at"] == "2024-05-06T11:00:00+00:00"


def test_sync_adds_changes_and_removes_schedules_and_keeps_unchanged_ones(clock, schedulers, redis):
    s = schedulers()
    s.start(paused=True)
    keep, change, drop = (Schedule(i, "C1", "0 9 * * *") for i in ("keep", "change", "drop"))
    sched.sync(s, [keep, change, drop])
    s.modify_job("keep", sched.STORE, next_run_time=T0 - timedelta(minutes=5))  # as if a firing is due
    sched.sync(s, [keep, Schedule("change", "C1", "0 10 * * *")])
    assert sorted(j.id for j in s.get_jobs(sched.STORE)) == ["change", "keep"]
    assert s.get_job("keep", sched.STORE).next_run_time == T0 - timedelta(minutes=5)
    assert s.get_job("change", sched.STORE).next_run_time.hour == 10


def test_meshbot_scheduler_processes_share_one_firing_and_keep_subscriptions_across_restarts(
        configure, env, redis, jobs, tmp_path):
    # A daily digest due 10 minutes ago, so its next firing is a day away whatever the time now.
    missed = (datetime.now(UTC) - timedelta(minutes=10)).replace(second=0, microsecond=0)
    daily = {"channel": "C1", "cron": f"{missed.minute} {missed.hour} * * *", "id": "daily"}
    configure({"prod": {}}, digests=[daily])
    made = Subscriptions(redis).add("C2", "0 9 * * *", ("prod",), "U1")
    # A scheduler ran before and went down three days ago: three firings were missed.
    [schedule] = from_config(Config.model_validate({"clusters": {"prod": {}}, "digests": [daily]}))
    previous = sched.build_scheduler(redis_lib.Redis.from_url(redis_url(13)))
    previous.start(paused=True)
    sched.sync(previous, [schedule])
    previous.modify_job("daily", sched.STORE, next_run_time=missed - timedelta(days=2))
    previous.shutdown()

    procs = []
    try:
        for n in range(2):
            procs.append(spawn(["scheduler"], env, tmp_path / f"scheduler-{n}.log"))

        def running():
            for p in procs:
                assert p.poll() is None, Path(p.log_path).read_text()
            return all("scheduler running: 2 schedules" in Path(p.log_path).read_text() for p in procs)

        eventually(running, timeout=30)
        [job_id] = eventually(jobs, timeout=30)
        [payload] = payloads(redis, [job_id])
        assert payload["schedule"] == "daily" and payload["at"] == missed.isoformat()  # coalesced: the latest
        assert redis.hexists(sched.JOBS_KEY, made.id)  # the Slack subscription reached the job store
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(20)
    assert all(p.returncode == 0 for p in procs)
    assert len(jobs()) == 1
    assert redis.hexists(sched.JOBS_KEY, made.id) and redis.hexists(sched.JOBS_KEY, "daily")
