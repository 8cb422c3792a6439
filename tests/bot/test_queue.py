"""bot.queue.submit against the real Redis: one job per Slack delivery, readable by RQ, listed for `rq info`."""

import pytest
from conftest import CLOSED_REDIS_URL
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from bot import queue as jobqueue

PAYLOAD = {"kind": "check", "targets": ["mixer"], "cluster": "prod", "origin": {"source": "command", "user": "U1"}}


def test_a_delivery_makes_one_queued_job_with_its_json_payload_and_a_redelivery_finds_it(redis):
    q = jobqueue.queue(redis)
    first = jobqueue.submit(q, dict(PAYLOAD), "command:trig.1")
    again = jobqueue.submit(q, dict(PAYLOAD), "command:trig.1")
    other = jobqueue.submit(q, dict(PAYLOAD), "command:trig.2")

    assert first == (jobqueue.job_id_for("command:trig.1"), True)
    assert again == (first[0], False) and other[1] is True
    assert q.job_ids == [first[0], other[0]]
    job = Job.fetch(first[0], connection=redis, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.QUEUED
    assert job.func_name == jobqueue.JOB_FUNCTION and list(job.args) == [PAYLOAD]
    assert job.retries_left == jobqueue.RETRIES and job.timeout == jobqueue.job_timeout() > jobqueue.JOB_TIMEOUT


def test_the_queue_is_listed_in_rqs_set_of_queues_again_after_redis_lost_it(redis, monkeypatch):
    q = jobqueue.queue(redis)
    monkeypatch.setattr(jobqueue, "_registered", {})
    jobqueue.submit(q, dict(PAYLOAD), "command:trig.1")
    assert [x.name for x in Queue.all(connection=redis)] == [jobqueue.QUEUE_NAME]

    redis.delete(Queue.redis_queues_keys)  # as after a restart of a Redis that keeps nothing on disk
    jobqueue.submit(q, dict(PAYLOAD), "command:trig.2")
    assert Queue.all(connection=redis) == []  # not re-listed on every command: that would cost a round trip
    monkeypatch.setattr(jobqueue, "REGISTER_EVERY", 0.0)
    jobqueue.submit(q, dict(PAYLOAD), "command:trig.3")
    assert [x.name for x in Queue.all(connection=redis)] == [jobqueue.QUEUE_NAME]
    assert len(q.job_ids) == 3


def test_an_unreachable_redis_is_queue_down_not_a_crash():
    q = jobqueue.queue(jobqueue.connect(CLOSED_REDIS_URL))
    with pytest.raises(jobqueue.QueueDown):
        jobqueue.submit(q, dict(PAYLOAD), "command:trig.1")


def test_connect_uses_short_timeouts_so_an_ack_never_waits_on_a_hung_redis():
    kwargs = jobqueue.connect("redis://127.0.0.1:6379/0").connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 1.0


def test_the_breaker_refuses_at_once_after_a_failure_and_tries_again_after_its_rest(redis):
    now = [100.0]
    breaker = jobqueue.Breaker(rest=5, clock=lambda: now[0])
    down, up = jobqueue.queue(jobqueue.connect(CLOSED_REDIS_URL)), jobqueue.queue(redis)
    with pytest.raises(jobqueue.QueueDown), breaker:
        jobqueue.submit(down, dict(PAYLOAD), "command:trig.1")
    now[0] += 4.9
    with pytest.raises(jobqueue.QueueDown, match="not trying Redis again yet"), breaker:
        jobqueue.submit(up, dict(PAYLOAD), "command:trig.2")
    assert up.job_ids == []  # refused without calling Redis, which is up again
    now[0] += 0.2
    with breaker:
        jobqueue.submit(up, dict(PAYLOAD), "command:trig.3")
    assert up.job_ids == [jobqueue.job_id_for("command:trig.3")]


def test_the_breaker_turns_any_redis_error_into_queue_down_but_rests_only_after_an_outage(redis):
    breaker = jobqueue.Breaker()
    with pytest.raises(jobqueue.QueueDown), breaker:
        redis.execute_command("NO-SUCH-COMMAND")  # Redis answered: a bug, not an outage
    with breaker:
        redis.ping()
    with pytest.raises(jobqueue.QueueDown), breaker:
        jobqueue.connect(CLOSED_REDIS_URL).ping()
    with pytest.raises(jobqueue.QueueResting):
        breaker.__enter__()


def test_a_refusal_inside_a_nested_use_does_not_extend_the_rest(redis):
    now = [100.0]
    breaker = jobqueue.Breaker(rest=5, clock=lambda: now[0])
    with pytest.raises(jobqueue.QueueDown), breaker:  # as the desk's digest path wraps its enqueue
        with pytest.raises(jobqueue.QueueDown), breaker:
            jobqueue.connect(CLOSED_REDIS_URL).ping()
        now[0] += 4
        with breaker:  # refused: resting
            redis.ping()
    now[0] += 1.1  # 5.1 s after the failure, not after the refusal
    with breaker:
        redis.ping()
