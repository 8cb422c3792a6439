"""A recovery run: distinct `/mesh check` commands through the real bot while workers die, Redis restarts and
Slack fails, then every answer is counted. Used by tests/bot/test_recovery.py and bench/recovery_bench.py.

The parts are the real ones: the Bolt app over HTTP (in this process), `meshbot worker` processes, a
redis-server of its own with its append-only file (tests/bot/redis_server.py), the Slack stand-in and the
simulated API server with latency on every request. The chaos, on a seeded schedule while commands arrive:

- SIGKILL of a busy worker together with its work-horse, as when a pod dies; a replacement is started
  at once, as Kubernetes would;
- Redis SIGKILLed and started again from its append-only file;
- bursts of Slack 429s (Retry-After: 1) and 5xx, some of them after Slack stored the message.

A command whose ack says the queue is down is sent again, as its user would. Counted from what the stand-in
stored (SlackStub.posted): an answer is lost when a command's job has no finished parent; duplicated when one
(job, key) shows more than once. Recovery time is, for each killed worker's job, from the kill to its answer.
"""

from __future__ import annotations

import itertools
import os
import random
import secrets
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from conftest import eventually, spawn, stop
from redis_server import RedisServer
from rq import Worker
from slack_requests import Sender

import kubesim
from bot import queue as jobqueue
from bot import slackstub as sr
from bot.app import build_app
from bot.config import Secrets, load_config
from bot.serve import BackgroundServer, web_application
from bot.slackstub import SlackStub
from bot.thread import EVENT_TYPE
from checks.runner import ALL_CHECKS, GROUPS

SCENARIO = "istio-0.5.1-fd-crash"


@dataclass
class Figures:
    commands: int
    answered: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[tuple[str, str]] = field(default_factory=list)
    kills: int = 0
    redis_restarts: int = 0
    redis_down_ms: list[float] = field(default_factory=list)
    slack_failures: Counter = field(default_factory=Counter)
    resent: int = 0  # commands sent again after a queue-down ack
    recovery_s: list[float] = field(default_factory=list)  # kill → that job's answer
    answer_s: list[float] = field(default_factory=list)  # command accepted → answer, every command
    wall_s: float = 0.0
    slowest: tuple | None = None  # (recovery s, job id, kill time into the run)

    def summary(self) -> str:
        def spread(xs):
            xs = sorted(xs)
            return (f"median {xs[len(xs) // 2]:.1f} s, max {xs[-1]:.1f} s" if xs else "n/a")
        return (f"{self.commands} commands: {self.answered} answered, {len(self.lost)} lost, "
                f"{len(self.duplicated)} duplicated; {self.kills} worker kills, {self.redis_restarts} Redis restarts "
                f"(down {', '.join(f'{d:.0f}' for d in self.redis_down_ms)} ms), Slack failures "
                f"{dict(self.slack_failures)}, {self.resent} commands re-sent; recovery after a kill: "
                f"{spread(self.recovery_s)}; answer time: {spread(self.answer_s)}; wall {self.wall_s:.1f} s")


def targets(n: int) -> list[str]:
    """``n`` distinct targets: the groups, `all`, every check id, then pairs of them."""
    single = sorted(GROUPS) + ["all"] + sorted(c.id for c in ALL_CHECKS)
    pairs = (f"{a} {b}" for a, b in itertools.combinations(single, 2))
    chosen = list(itertools.islice(itertools.chain(single, pairs), n))
    assert len(chosen) == n
    return chosen


def kill_with_horse(pid: int) -> None:
    """SIGKILL a worker and its work-horse at once (the horse is not in the worker's process group)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    os.kill(pid, signal.SIGKILL)
    for child in children:
        try:
            os.kill(int(child), signal.SIGKILL)
        except ProcessLookupError:
            pass


def run(tmp: Path, commands: int = 60, workers: int = 3, kills: int = 6, redis_restarts: int = 1,
        latency_ms: float = 20, seed: int = 12, every: float = 0.25, deadline_s: float = 180) -> Figures:
    rng = random.Random(seed)
    figures = Figures(commands)
    started_at = time.monotonic()
    redis_server = RedisServer(tmp / "redis").start()
    slack = SlackStub().start()
    sim = kubesim.Simulator(kubesim.load(SCENARIO, {"latency_ms": latency_ms})).start()
    config = tmp / "meshbot.yaml"
    config.write_text(yaml.safe_dump({"clusters": {"prod": {"kubeconfig": str(sim.write_kubeconfig(tmp / "kc"))}}}))
    env = {"SLACK_BOT_TOKEN": "xoxb-" + secrets.token_hex(12), "SLACK_SIGNING_SECRET": secrets.token_hex(16),
           "SLACK_API_URL": slack.api_url, "REDIS_URL": redis_server.url, "MESHBOT_CONFIG": str(config),
           "MESHBOT_SLACK_RETRY_SECONDS": "60"}
    procs: list = []
    server = None
    try:
        secrets_ = Secrets.from_env(env)
        connection = jobqueue.connect(redis_server.url)

        async def application():
            return web_application(await build_app(load_config(config), secrets_, redis=connection), connection)

        server = BackgroundServer(application)
        app = Sender(f"http://127.0.0.1:{server.port}/slack/events", env["SLACK_SIGNING_SECRET"])

        def start_worker():
            procs.append(spawn(["worker"], env, tmp / f"worker-{len(procs)}.log"))

        for _ in range(workers):
            start_worker()
        live = redis_server.client()
        eventually(lambda: len(Worker.all(connection=live)) >= workers, timeout=60)

        accepted: dict[str, float] = {}  # job id → when its command was accepted
        kill_log: list[tuple[float, str]] = []  # (when, the job its worker was running)
        sending_done = threading.Event()

        def send_all():
            for target in targets(commands):
                while True:
                    trigger = f"trig.{secrets.token_hex(6)}"
                    answer = app.post(sr.command(f"check {target}", slack.response_url, trigger_id=trigger))
                    if "job queue" not in answer.text:
                        accepted[jobqueue.job_id_for("command:" + trigger)] = time.monotonic()
                        break
                    figures.resent += 1
                    time.sleep(0.5)  # pacing the user's retry, not waiting for a result
                time.sleep(every)  # the commands' arrival rate
            sending_done.set()

        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()

        # The chaos schedule: kills, Redis restarts and Slack bursts spread over the sending window.
        window = commands * every
        events = [("kill", rng.uniform(0.1, 1.0) * window) for _ in range(kills)]
        events += [("redis", (i + 1) / (redis_restarts + 1) * window) for i in range(redis_restarts)]
        events += [("slack", t) for t in (i * window / 8 for i in range(1, 9))]
        t0 = time.monotonic()
        bursts = itertools.cycle([("chat.postMessage", 429, False), ("chat.postMessage", 500, True),
                                  ("chat.update", 503, False), ("chat.postMessage", 502, False)])
        for kind, at in sorted(events, key=lambda e: e[1]):
            pause = t0 + at - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # the schedule itself
            if kind == "kill":
                try:  # the next worker with a job in hand, unless none gets one before the sending ends
                    proc, job_id = eventually(lambda: _busy_worker(live, procs) or sending_done.is_set(),
                                              timeout=deadline_s)
                except (TypeError, ValueError):  # eventually returned True: sending is over, nothing to kill
                    continue
                kill_with_horse(proc.pid)
                proc.wait()
                kill_log.append((time.monotonic(), job_id))
                figures.kills += 1
                start_worker()
            elif kind == "redis":
                down = time.monotonic()
                redis_server.kill()
                redis_server.start()
                figures.redis_down_ms.append((time.monotonic() - down) * 1000)
                figures.redis_restarts += 1
            else:
                method, status, applied = next(bursts)
                slack.fail(method, status=status, times=3, error="ratelimited" if status == 429 else "internal_error",
                           applied=applied)
                figures.slack_failures[f"{method} {status}{' (stored)' if applied else ''}"] += 3

        sending_done.wait(deadline_s)
        answered_at: dict[str, float] = {}

        def all_answered():
            now = time.monotonic()
            for job_id in _finished_jobs(slack):
                answered_at.setdefault(job_id, now)
            return sending_done.is_set() and set(accepted) <= set(answered_at)

        slack.wait_for(lambda s: all_answered(), timeout=deadline_s)
        # wait_for re-checks on each Slack call: the last answer's time is when its call was seen.
        figures.answered = len(set(accepted) & set(answered_at))
        figures.lost = sorted(set(accepted) - set(answered_at))
        figures.duplicated = _duplicates(slack)
        figures.answer_s = [answered_at[j] - accepted[j] for j in accepted if j in answered_at]
        figures.recovery_s = [answered_at[j] - when for when, j in kill_log if j in answered_at]
        figures.slowest = max(((answered_at[j] - when, j, when - t0) for when, j in kill_log if j in answered_at),
                              default=None)
        figures.wall_s = time.monotonic() - started_at
        return figures
    finally:
        for proc in procs:  # SIGTERM all first: each takes its time to finish
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            stop(proc)
        if server is not None:
            server.stop()
        sim.stop()
        slack.stop()
        redis_server.kill()


def _busy_worker(connection, procs):
    """A live worker process of ours with a job in hand, and that job's id."""
    by_pid = {p.pid: p for p in procs if p.poll() is None}
    try:
        for w in Worker.all(connection=connection):
            job_id = w.get_current_job_id()
            if job_id and w.pid in by_pid:
                return by_pid[w.pid], job_id
    except Exception:  # Redis restarting: skip this kill
        return None
    return None


def _bot_messages(slack):
    return [m for m in slack.posted() if m.get("user") == "UBOT"]


def _finished_jobs(slack) -> set[str]:
    """Jobs whose parent carries the final answer (the Re-run button of a finished check)."""
    done = set()
    for m in _bot_messages(slack):
        meta = m.get("metadata") or {}
        payload = meta.get("event_payload") or {}
        if meta.get("event_type") == EVENT_TYPE and payload.get("key") == "parent" and "Re-run" in str(m.get("blocks")):
            done.add(payload["job"])
    return done


def _duplicates(slack) -> list[tuple[str, str]]:
    seen = Counter()
    for m in _bot_messages(slack):
        meta = m.get("metadata") or {}
        if meta.get("event_type") == EVENT_TYPE:
            seen[(meta["event_payload"]["job"], meta["event_payload"]["key"])] += 1
        elif not m.get("files"):
            seen[("untagged", m["ts"])] += 2  # a bot message without its tag is a bug
    return sorted(k for k, n in seen.items() if n > 1)
