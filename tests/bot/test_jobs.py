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
