"""Exactly-once answers through crashes at any point, Slack outages, and Redis going away (bot.thread, bot.slackretry).

What a person sees is counted from the stand-in's stored messages (SlackStub.posted), not from calls: a call
that failed before Slack stored anything shows nothing, one that failed after shows one message.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import chaos  # at import time: it takes its helpers from this folder's conftest
import pytest
import redis as redis_lib
import slack_requests as sr
from conftest import eventually, finished

from bot import jobs, render, slackretry
from bot.app import web_client
from bot.config import Secrets
from bot.thread import EVENT_TYPE, Thread


@pytest.fixture
def client(slack, monkeypatch):
    monkeypatch.setenv("MESHBOT_SLACK_RETRY_SECONDS", "5")
    return slackretry.outlasting(web_client(Secrets(slack_bot_token="xoxb-test", slack_api_url=slack.api_url)))


def thread(client, redis, job="job-1", channel="C1", thread_ts=None) -> Thread:
    return Thread(client, redis, job, channel, thread_ts)


def shown(slack, channel="C1"):
    """The bot's messages a person sees in ``channel`` (people's own messages left out)."""
    return [m for m in slack.posted(channel) if m["user"] == "UBOT"]


MESSAGE = render.Message(text="Checking mixer on prod…", blocks=[])
REPLY = render.Message(text="mixer.report-calls: fail", blocks=[])


def test_each_post_carries_its_job_and_key_in_slack_metadata_and_reads_back_with_it(client, redis, slack):
    t = thread(client, redis)
    t.start(MESSAGE)
    t.reply("mixer.report-calls", [REPLY])
    parent, reply = shown(slack)
    assert parent["metadata"] == {"event_type": EVENT_TYPE, "event_payload": {"job": "job-1", "key": "parent"}}
    assert reply["metadata"]["event_payload"] == {"job": "job-1", "key": "reply:mixer.report-calls:0"}
    assert reply["thread_ts"] == parent["ts"] and not slack.to("conversations.history")  # no lookup needed
    # As Slack: metadata is read back only when asked for.
    history = client.conversations_history(channel="C1")
    assert [m["ts"] for m in history["messages"]] == [parent["ts"]] and "metadata" not in history["messages"][0]
    thread_ = client.conversations_replies(channel="C1", ts=parent["ts"], include_all_metadata=True)
    assert [m["ts"] for m in thread_["messages"]] == [parent["ts"], reply["ts"]]
    assert thread_["messages"][1]["metadata"]["event_type"] == EVENT_TYPE and thread_["has_more"] is False


def test_a_5xx_after_slack_stored_the_post_is_found_not_posted_again(client, redis, slack):
    slack.fail("chat.postMessage", status=500, error="internal_error", applied=True)
    t = thread(client, redis)
    t.start(MESSAGE)
    t.reply("mixer.report-calls", [REPLY])
    [parent, reply] = shown(slack)
    assert redis.hget(t.key, "parent").decode() == parent["ts"] and reply["thread_ts"] == parent["ts"]
    assert len(slack.to("conversations.history")) == 1


def test_5xx_timeouts_and_refused_connections_are_retried_until_slack_answers(client, redis, slack):
    slack.fail("chat.postMessage", status=503, error="service_unavailable", times=2)
    slack.fail("chat.update", status=502, error="bad_gateway", times=2)
    slack.fail("conversations.history", status=500, error="internal_error")
    t = thread(client, redis)
    t.start(MESSAGE)
    t.start(render.Message(text="done", blocks=[]))
    [parent] = shown(slack)
    assert parent["text"] == "done" and len(slack.to("chat.postMessage")) == 3


def test_a_slack_outage_longer_than_the_budget_ends_the_job_undelivered_and_recorded(client, redis, slack,
                                                                                     monkeypatch, caplog):
    monkeypatch.setenv("MESHBOT_SLACK_RETRY_SECONDS", "1.5")
    slack.fail("chat.postMessage", status=500, error="internal_error", times=1000)
    caplog.set_level(logging.INFO)

    class Job:
        id, connection = "job-9", redis

    payload = {"kind": "check", "targets": ["mixer"], "cluster": "prod",
               "origin": {"source": "command", "user": "U1", "channel": "C1"}}
    monkeypatch.setattr(jobs, "context", lambda: jobs.Context(None, None, client))
    monkeypatch.setitem(jobs.KINDS, "check", lambda ctx, t, p, j: t.start(MESSAGE))
    monkeypatch.setattr("rq.get_current_job", lambda: Job)
    before = jobs.metrics.UNDELIVERED.labels("check", "internal_error")._value.get()
    assert jobs.run(payload) == {"error": "undelivered", "cause": "internal_error (500)"}
    assert len(slack.to("chat.postMessage")) >= 2 and shown(slack) == []
    assert jobs.metrics.UNDELIVERED.labels("check", "internal_error")._value.get() == before + 1
    [line] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "meshbot.audit"]
    assert line["outcome"] == "undelivered" and line["job"] == "job-9" and line["cause"] == "internal_error (500)"
    assert any("answer not delivered" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_a_slack_that_never_answers_is_retried_until_the_budget_then_recorded_as_a_timeout(hung_server, redis,
                                                                                          monkeypatch):
    import time

    monkeypatch.setenv("MESHBOT_SLACK_RETRY_SECONDS", "2")
    port, accepted = hung_server
    hung = slackretry.outlasting(web_client(Secrets(slack_bot_token="xoxb-test",
                                                    slack_api_url=f"http://127.0.0.1:{port}/api/")))
    hung.timeout = 0.3
    began = time.monotonic()
    with slackretry.budget(), pytest.raises(Exception) as caught:
        thread(hung, redis).start(MESSAGE)
    assert slackretry.is_transient(caught.value) and slackretry.cause(caught.value) == "TimeoutError"
    assert 2 <= time.monotonic() - began < 2 + 1.5  # the budget, then at most one more attempt's timeout


def test_retry_after_is_honoured_and_the_failure_notice_is_retried_like_any_post(run_notice, slack):
    import time

    def outage():  # Slack fails the notice's update: a 429, then two 503s
        slack.fail("chat.update", status=429, retry_after=1)
        slack.fail("chat.update", status=503, error="service_unavailable", times=2)
        return time.monotonic()

    began = run_notice(outage)
    assert time.monotonic() - began >= 1  # Retry-After: 1
    updates = [c.params["text"] for c in slack.to("chat.update")]
    assert updates[-4:] == [updates[-1]] * 4 and updates[-1].startswith("Could not run")
    [parent] = shown(slack)
    assert parent["text"] == updates[-1]


@pytest.fixture
def run_notice(client, redis, monkeypatch):
    """A check whose work keeps failing, run through RQ until its retries are spent: then the notice goes."""
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from bot import queue as jobqueue
    from bot.config import Config

    monkeypatch.setattr(jobs, "context", lambda: jobs.Context(Config.model_validate({}), None, client))

    began = []

    def run(before_notice):
        def crashing(ctx, t, payload, job):
            t.start(MESSAGE)
            if not job.retries_left:  # the last run: its failure notice comes next
                began.append(before_notice())
            raise RuntimeError("boom")

        monkeypatch.setitem(jobs.KINDS, "check", crashing)
        payload = {"kind": "check", "targets": ["mixer"], "cluster": "prod",
                   "origin": {"source": "command", "user": "U1", "channel": "C1"}}
        jobqueue.submit(jobqueue.queue(redis), payload, "test:notice")
        SimpleWorker([jobqueue.queue(redis)], connection=redis, serializer=JSONSerializer).work(burst=True)
        return began[0]

    return run


class FlakyRedis(redis_lib.Redis):
    """A Redis whose next write of ``field`` fails: as when Redis goes away between Slack's answer and the write."""

    fail_field: str | None = None

    def pipeline(self, *args, **kwargs):
        pipe = super().pipeline(*args, **kwargs)
        hset = pipe.hset

        def failing(key, mapping=None, **kw):
            if self.fail_field in (mapping or {}):
                self.fail_field = None
                raise redis_lib.ConnectionError("Redis went away")
            return hset(key, mapping=mapping, **kw)

        pipe.hset = failing
        return pipe


@pytest.mark.parametrize("field", ["parent", "reply:mixer.report-calls:0"])
def test_redis_lost_between_slacks_answer_and_the_write_then_the_rerun_posts_nothing_twice(client, redis, slack,
                                                                                          field):
    flaky = FlakyRedis(connection_pool=redis.connection_pool)
    flaky.fail_field = field
    with pytest.raises(redis_lib.ConnectionError):
        t = thread(client, flaky)
        t.start(MESSAGE)
        t.reply("mixer.report-calls", [REPLY])
    assert len(shown(slack)) == (1 if field == "parent" else 2)

    rerun = thread(client, redis)
    rerun.start(MESSAGE)
    rerun.reply("mixer.report-calls", [REPLY])
    rerun.start(render.Message(text="done", blocks=[]))
    parent, reply = shown(slack)
    assert parent["text"] == "done" and reply["thread_ts"] == parent["ts"]


def test_an_intent_whose_post_never_reached_slack_is_posted_on_the_rerun(client, redis, slack):
    slack.fail("chat.postMessage", status=200, error="fatal_error")  # answered: Slack stored nothing
    with pytest.raises(Exception, match="fatal_error"):
        thread(client, redis).start(MESSAGE)
    assert shown(slack) == []
    thread(client, redis).start(MESSAGE)
    assert len(shown(slack)) == 1


def test_a_mentions_answer_in_the_askers_thread_is_found_there(client, redis, slack):
    slack.fail("chat.postMessage", status=500, error="internal_error", applied=True, times=2)
    t = thread(client, redis, thread_ts="1700000000.000100")
    t.start(MESSAGE)
    t.reply("answer", [REPLY])
    assert [m["text"] for m in shown(slack)] == [MESSAGE.text, REPLY.text]
    assert [c.params["ts"] for c in slack.to("conversations.replies")] == ["1700000000.000100"] * 2


def test_a_file_uploaded_before_a_crash_is_not_uploaded_again(client, redis, slack):
    message = render.Message(text="long output", blocks=[], file=("mixer.txt", "x" * 5000))
    t = thread(client, redis)
    t.start(MESSAGE)
    redis.hset(t.key, "intent:reply:r:0:file", "0")  # the first run got as far as the upload, then died
    redis.hset(t.key, "reply:r:0", "1.1")
    client.files_upload_v2(channel="C1", thread_ts=t.root, filename="mixer.txt", title="mixer.txt", content="x")
    t.reply("r", [message])
    assert len(slack.to("files.completeUploadExternal")) == 1


# The same with a real worker, killed with its work-horse as when its pod dies.

def kill_worker(proc) -> None:
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    os.kill(proc.pid, signal.SIGKILL)
    for horse in children:
        os.kill(int(horse), signal.SIGKILL)
    proc.wait()


@pytest.fixture
def checking(simulate, configure, serve, slack, worker, env, monkeypatch):
    sim, kubeconfig = simulate("istio-0.5.1-fd-crash")
    configure({"prod": {"kubeconfig": str(kubeconfig)}})
    env["MESHBOT_SLACK_RETRY_SECONDS"] = "10"
    app = serve()

    def run() -> object:
        proc = worker()
        app.post(sr.command("check mixer", slack.response_url))
        return proc

    return run


def test_a_worker_killed_while_its_post_is_in_flight_posts_it_once(checking, slack, worker):
    gate = slack.hold("chat.postMessage")
    first = checking()
    slack.wait_for(lambda s: s.to("chat.postMessage"))
    kill_worker(first)  # the post is at Slack, unanswered
    gate.set()  # Slack finishes it; the answer goes nowhere
    eventually(lambda: shown(slack))
    worker()
    slack.wait_for(finished, timeout=60)
    bot = shown(slack)
    assert len([m for m in bot if "thread_ts" not in m or m["thread_ts"] == m["ts"]]) == 1
    texts = [m["text"] for m in bot]
    assert len(texts) == len(set(texts)) and len(slack.to("conversations.history")) == 1


def test_a_worker_killed_after_slacks_answer_but_before_the_redis_write_posts_nothing_twice(checking, slack,
                                                                                          worker):
    procs = []

    def die_on_first_reply(call, answer):
        if call.method == "chat.postMessage" and call.params.get("thread_ts") and procs and not killed:
            killed.append(call)
            kill_worker(procs[0])  # Slack stored the reply; the worker never hears of it

    killed: list = []
    slack.listeners.append(die_on_first_reply)
    procs.append(checking())
    eventually(lambda: killed, timeout=30)
    worker()
    slack.wait_for(finished, timeout=60)
    texts = [m["text"] for m in shown(slack)]
    assert len(texts) == len(set(texts)), texts
    assert killed[0].params["text"] in texts and len(slack.to("conversations.replies")) >= 1


# Redis going away under a running worker.

@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, not started yet."""
    from redis_server import RedisServer

    server = RedisServer(tmp_path / "redis")
    yield server
    server.kill()


def test_a_worker_waits_out_a_redis_outage_with_back_off_and_carries_on_after_it(own_redis, env, configure, serve,
                                                                              slack, worker, simulate):
    sim, kubeconfig = simulate("istio-0.5.1-fd-crash")
    configure({"prod": {"kubeconfig": str(kubeconfig)}})
    env["REDIS_URL"] = own_redis.url
    proc = worker()  # Redis is not up yet: as when both pods start together

    def log_lines(text):
        assert proc.poll() is None, proc.log_path.read_text()  # never exits, so never a restart loop
        return [json.loads(line)["msg"] for line in proc.log_path.read_text().splitlines()
                if line.startswith("{") and text in line]

    waits = eventually(lambda: len(log_lines("reconnecting in")) >= 3 and log_lines("reconnecting in"), timeout=30)
    pauses = [float(w.rsplit("in ", 1)[1].split(" ")[0]) for w in waits[:3]]
    assert pauses[0] < pauses[2], pauses  # backing off, not a tight loop

    own_redis.start()
    app = serve(redis_url=own_redis.url)
    app.post(sr.command("check mixer", slack.response_url))
    slack.wait_for(lambda s: len(finished(s)) == 1, timeout=60)

    own_redis.kill()  # under a running worker: RQ's own dequeue retries, or this module's loop, wait it out
    before = len(log_lines("reconnecting in")) + len(log_lines("could not connect to Redis"))
    eventually(lambda: len(log_lines("reconnecting in")) + len(log_lines("could not connect to Redis")) > before,
               timeout=30)
    own_redis.start()  # from its append-only file
    app.post(sr.command("check pilot", slack.response_url))
    slack.wait_for(lambda s: len(finished(s)) == 2, timeout=60)
    assert proc.poll() is None


# Recovery figures: everything at once (tests/bot/chaos.py; the full run with figures is bench/recovery_bench.py).

def test_sixty_commands_through_worker_kills_a_redis_restart_and_slack_bursts_lose_and_repeat_nothing(tmp_path):

    figures = chaos.run(tmp_path, commands=60, kills=6, redis_restarts=1, latency_ms=20)
    print(figures.summary())
    assert figures.kills >= 3 and figures.redis_restarts == 1 and sum(figures.slack_failures.values()) >= 12
    assert figures.lost == [] and figures.duplicated == [] and figures.answered == 60


def test_a_worker_dead_before_its_horse_started_the_job_has_it_back_after_the_lease_not_a_minute(redis):
    """The lease's sweep re-queues only jobs marked started; the worker marks them so as it takes the lease."""
    from datetime import timedelta

    from rq.job import JobStatus
    from rq.utils import current_timestamp

    from bot import queue as jobqueue
    from bot import worker as meshworker

    q = jobqueue.queue(redis)
    job_id, _ = jobqueue.submit(q, {"kind": "check", "targets": ["mixer"], "origin": {}}, "command:t1")
    w = meshworker.build_worker(redis)
    w.register_birth()
    job, _ = w.dequeue_job_and_maintain_ttl(timeout=1)
    w.prepare_execution(job)  # and here the worker dies, before any work-horse
    assert job.get_status() == JobStatus.STARTED
    lease = meshworker.HEARTBEAT_SECONDS + meshworker.HEARTBEAT_GRACE
    q.started_job_registry.cleanup(current_timestamp() + lease + 1)
    assert q.job_ids == [job_id] and job.get_status() == JobStatus.QUEUED
    assert timedelta(seconds=lease) < timedelta(minutes=1)
