"""Jobs that fail: the parent says so once RQ gives up, and Slack errors no re-run can fix are not retried."""

import logging

import pytest
from rq import SimpleWorker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from bot import jobs, render
from bot import queue as jobqueue
from bot.app import web_client
from bot.config import Config, Secrets

PAYLOAD = {"kind": "check", "targets": ["mixer"], "cluster": "prod",
           "origin": {"source": "command", "user": "U1", "channel": "C1"}}


@pytest.fixture
def run_job(redis, slack, monkeypatch):
    """Submit PAYLOAD as the web process does, with ``kind`` as its work, and run it (retries too) in this process."""
    client = web_client(Secrets(slack_bot_token="xoxb-test", slack_api_url=slack.api_url))
    monkeypatch.setattr(jobs, "context", lambda: jobs.Context(Config.model_validate({}), None, client))

    def run(kind) -> Job:
        monkeypatch.setitem(jobs.KINDS, "check", kind)
        job_id, _ = jobqueue.submit(jobqueue.queue(redis), PAYLOAD, "test:failing")
        SimpleWorker([jobqueue.queue(redis)], connection=redis, serializer=JSONSerializer).work(burst=True)
        return Job.fetch(job_id, connection=redis, serializer=JSONSerializer)

    return run


def test_a_job_that_keeps_failing_says_so_in_its_parent_once_retries_run_out(run_job, slack):
    runs = []

    def crashing(ctx, thread, payload, job):
        runs.append(job.id)
        thread.start(render.running(payload["targets"], "prod", again=thread.started))
        raise RuntimeError("boom")

    job = run_job(crashing)
    assert job.get_status() == JobStatus.FAILED and len(runs) == 1 + jobqueue.RETRIES
    [parent] = slack.to("chat.postMessage")
    assert parent.params["text"] == "Checking mixer on prod…"
    updates = [c.params["text"] for c in slack.to("chat.update")]
    assert updates[-1] == "Could not run /mesh check mixer on prod: it failed (the worker's log has the error)"
    assert sum(t.startswith("Could not run") for t in updates) == 1  # not on the runs that were retried


def test_a_slack_error_no_retry_can_fix_ends_the_job_without_retries(run_job, slack, caplog):
    runs = []

    def posting(ctx, thread, payload, job):
        runs.append(job.id)
        thread.start(render.running(payload["targets"], "prod"))

    slack.fail("chat.postMessage", status=200, error="not_in_channel", times=5)
    caplog.set_level(logging.WARNING, logger="meshbot.jobs")
    job = run_job(posting)
    assert job.get_status() == JobStatus.FINISHED and len(runs) == 1
    assert job.return_value() == {"error": "not_in_channel"}
    assert any("Slack answered not_in_channel for channel C1" in r.getMessage() for r in caplog.records)
    assert "xoxb-test" not in caplog.text


@pytest.fixture
def ask_in_incident_channel(redis, slack, monkeypatch):
    """Run an incident-channel question (as the web process enqueues it) through a real RQ worker."""
    import knowledge

    client = web_client(Secrets(slack_bot_token="xoxb-test", slack_api_url=slack.api_url))
    config = Config.model_validate({"incident": {"channels": ["C9"], "min_score": 0.5}})
    monkeypatch.setattr(jobs, "context", lambda: jobs.Context(config, knowledge.load_index(()), client))

    def ask(question: str, thread_ts: str, delivery: str) -> Job:
        origin = {"source": "incident", "user": "U1", "channel": "C9", "thread_ts": thread_ts}
        job_id, _ = jobqueue.submit(jobqueue.queue(redis), {"kind": "ask", "question": question, "origin": origin},
                                    delivery)
        SimpleWorker([jobqueue.queue(redis)], connection=redis, serializer=JSONSerializer).work(burst=True)
        return Job.fetch(job_id, connection=redis, serializer=JSONSerializer)

    return ask


def test_an_incident_channel_gets_one_confident_answer_per_thread(ask_in_incident_channel, slack):
    first = ask_in_incident_channel("sidecar keeps restarting when traffic spikes", "1700.1", "event:E1")
    assert first.return_value()["answered"] is True
    answers = slack.to("chat.postMessage")
    assert answers and all(c.params["thread_ts"] == "1700.1" for c in answers)
    assert "#envoy-is-crashing-under-load" in " ".join(c.params["text"] for c in answers)  # built-in knowledge

    again = ask_in_incident_channel("envoy asserts fd_ != -1, too many open files", "1700.1", "event:E2")
    assert again.return_value() == {"answered": False}  # the thread already has meshbot's answer
    assert len(slack.to("chat.postMessage")) == len(answers)
    elsewhere = ask_in_incident_channel("envoy asserts fd_ != -1, too many open files", "1700.3", "event:E4")
    assert elsewhere.return_value()["answered"] is True  # the same question in another thread is answered


def test_an_incident_channel_gets_no_answer_below_the_threshold(ask_in_incident_channel, slack):
    job = ask_in_incident_channel("anyone up for lunch at noon?", "1700.2", "event:E3")
    assert job.return_value() == {"answered": False}
    assert slack.to("chat.postMessage") == []
