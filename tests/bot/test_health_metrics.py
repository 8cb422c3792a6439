"""The bot's own health: probes, Prometheus metrics, JSON logs, and a worker's warm shutdown on SIGTERM."""

import asyncio
import json
import logging
import os
import signal
import threading
from pathlib import Path

import httpx
import pytest
import slack_requests as sr
from conftest import (
    CLOSED_REDIS_URL,
    eventually,
    finished,
    free_port,
    parent_posts,
    replies,
    sigterm_waits_for,
    spawn,
    stop,
    wait_until_healthy,
)
from prometheus_client.parser import text_string_to_metric_families
from rq.job import Job
from rq.serializers import JSONSerializer

from bot import logs
from bot.app import build_app
from bot.config import Config, Secrets

pytestmark = pytest.mark.redis_db(10)  # not tests/bot's DB 11: these tests' workers must see only their own jobs


def scrape(url: str) -> dict:
    """/metrics as {(sample name, frozenset(labels)): value}."""
    response = httpx.get(url, timeout=5)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def health_worker(env, tmp_path):
    """Starts a real `meshbot worker --health-port P` process (once the config is written); returns (process, URL)."""
    started = []

    def start():
        port = free_port()
        proc = spawn(["worker", "--health-port", str(port)], env, tmp_path / "worker.log")
        started.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_until_healthy(proc, base)
        return proc, base

    yield start
    for proc in started:
        stop(proc)


def test_serve_counts_commands_by_outcome_and_reads_the_queue_at_scrape_time(configure, serve, slack, redis):
    configure({"prod": {"kubeconfig": "/nowhere", "allowed_users": ["U_ADMIN"]}})
    app = serve()
    before = scrape(app.base + "/metrics")
    app.post(sr.command("check mixer on prod", slack.response_url, user="U_ADMIN"))
    app.post(sr.command("check mixer on prod", slack.response_url, user="U_OTHER"))
    app.post(sr.command("chek mixer", slack.response_url))
    after = scrape(app.base + "/metrics")

    def delta(**labels):
        name = "meshbot_commands_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(via="command", command="check", outcome="queued") == 1
    assert delta(via="command", command="check", outcome="denied") == 1
    assert delta(via="command", command="other", outcome="invalid") == 1
    assert value(after, "meshbot_redis_up") == 1
    assert value(after, "meshbot_jobs", state="queued") == 1  # no worker here: the job waits
    assert value(after, "meshbot_jobs", state="running") == 0 and value(after, "meshbot_jobs", state="failed") == 0


def test_with_redis_down_serve_is_alive_not_ready_and_still_serves_metrics(configure, serve):
    app = serve(CLOSED_REDIS_URL)
    assert app.http.get(app.base + "/healthz").status_code == 200
    assert app.http.get(app.base + "/readyz").status_code == 503
    samples = scrape(app.base + "/metrics")
    assert value(samples, "meshbot_redis_up") == 0
    assert not [k for k in samples if k[0] == "meshbot_jobs"]


def test_slack_api_errors_are_counted_where_the_client_is_called(configure, serve, slack):
    app = serve()
    before = scrape(app.base + "/metrics")
    # A mention that needs no job is answered at once, by the web process: make that post fail.
    slack.fail("chat.postMessage", status=200, error="not_in_channel")
    app.post(sr.event(sr.mention("clusters")), json_body=True)
    slack.wait_for(lambda s: s.to("chat.postMessage"))
    labels = {"method": "chat.postMessage", "error": "not_in_channel"}
    eventually(lambda: value(scrape(app.base + "/metrics"), "meshbot_slack_api_errors_total", **labels)
               == value(before, "meshbot_slack_api_errors_total", **labels) + 1)


def test_worker_health_port_serves_probes_and_the_work_horses_metrics(simulate, configure, serve, slack, redis,
                                                                       health_worker, env):
    sim, kubeconfig = simulate("istio-0.5.1-fd-crash")
    configure({"prod": {"kubeconfig": str(kubeconfig)}})
    proc, base = health_worker()
    assert httpx.get(base + "/healthz").status_code == 200
    assert httpx.get(base + "/readyz").status_code == 200
    # The job's first post is rate limited once: slack_sdk waits and retries, in the forked work-horse.
    slack.fail("chat.postMessage", status=429, times=1, retry_after=1)
    app = serve()
    app.post(sr.command("check envoy", slack.response_url))
    slack.wait_for(finished, timeout=60)
    # The job is answered a moment before RQ records it as finished.
    eventually(lambda: value(scrape(base + "/metrics"), "meshbot_jobs", state="running") == 0)

    samples = scrape(base + "/metrics")
    assert value(samples, "meshbot_slack_api_retries_total", reason="ratelimited") == 1
    assert value(samples, "meshbot_redis_up") == 1
    assert value(samples, "meshbot_jobs", state="failed") == 0
    log_lines = [json.loads(line) for line in proc.log_path.read_text().splitlines() if line.strip()]
    assert all({"ts", "level", "logger"} <= line.keys() for line in log_lines)
    assert any("Job OK" in line.get("msg", "") for line in log_lines)
    text = proc.log_path.read_text()
    assert env["SLACK_BOT_TOKEN"] not in text and env["SLACK_SIGNING_SECRET"] not in text


def test_check_durations_are_observed_per_check(simulate, configure, serve, slack, redis, health_worker):
    sim, kubeconfig = simulate("istio-0.5.1-fd-crash")
    configure({"prod": {"kubeconfig": str(kubeconfig)}})
    proc, base = health_worker()
    app = serve()
    app.post(sr.command("check envoy", slack.response_url))
    slack.wait_for(finished, timeout=60)
    app.post(sr.command("check envoy", slack.response_url))
    slack.wait_for(lambda s: len(finished(s)) == 2, timeout=60)

    def counted():
        samples = scrape(base + "/metrics")
        return value(samples, "meshbot_check_duration_seconds_count", check="envoy.fd-exhaustion") == 2 and samples

    samples = eventually(counted)  # two jobs, two work-horses: one histogram
    assert value(samples, "meshbot_check_duration_seconds_sum", check="envoy.fd-exhaustion") > 0
    assert value(samples, "meshbot_check_duration_seconds_bucket", check="envoy.fd-exhaustion", le="+Inf") == 2


def test_sigterm_lets_the_worker_finish_its_job_then_exit_0(job_in_flight, slack, redis):
    _, proc = job_in_flight  # the job is still running when the signal arrives

    os.kill(proc.pid, signal.SIGTERM)  # the worker only, as Kubernetes signals a container's first process
    [done] = slack.wait_for(finished, timeout=60)
    assert proc.wait(30) == 0
    assert "fail" in done.params["text"]
    assert len(parent_posts(slack)) == 1
    texts = [c.params["text"] for c in replies(slack)]
    assert len(texts) == len(set(texts)) and any("envoy.fd-exhaustion" in t for t in texts)
    [job_id] = [j.decode() for j in redis.zrange("rq:finished:meshbot", 0, -1)]
    assert Job.fetch(job_id, connection=redis, serializer=JSONSerializer).get_status() == "finished"
    assert "warm shut down requested" in Path(proc.log_path).read_text()


def test_sigterm_lets_serve_answer_the_request_in_flight_then_exit_0(configure, env, tmp_path, hung_redis):
    redis_url, accepted = hung_redis
    port = free_port()
    proc = spawn(["serve", "--port", str(port)], {**env, "REDIS_URL": redis_url}, tmp_path / "serve.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_healthy(proc, base)
        answers = []
        probe = threading.Thread(target=lambda: answers.append(httpx.get(base + "/readyz", timeout=10)))
        probe.start()
        assert accepted.wait(10)  # /readyz is waiting on Redis (for its 1 s timeout) when the signal comes
        os.kill(proc.pid, signal.SIGTERM)
        probe.join(10)
        [answer] = answers
        assert (answer.status_code, answer.text) == (503, "redis unreachable\n")
        assert proc.wait(10) == 0
        assert '"msg": "stopped"' in proc.log_path.read_text()
        with pytest.raises(httpx.ConnectError):
            httpx.get(base + "/healthz")
    finally:
        stop(proc)


def test_sigterm_lets_a_reply_after_the_ack_finish_before_serve_exits(configure, env, slack, tmp_path, redis):
    configure({"prod": {"kubeconfig": "/nonexistent"}}, default_cluster="prod")
    gate = slack.hold("response_url")
    port = free_port()
    proc = spawn(["serve", "--port", str(port)], env, tmp_path / "serve.log")
    try:
        wait_until_healthy(proc, f"http://127.0.0.1:{port}")
        sender = sr.Sender(f"http://127.0.0.1:{port}/slack/events", env["SLACK_SIGNING_SECRET"])
        assert sender.post(sr.click("check mixer on prod", slack.response_url)).status_code == 200
        slack.wait_for(lambda s: s.to("response_url"))  # the click's reply, sent after the ack, is held
        sigterm_waits_for(proc, gate)
    finally:
        gate.set()
        stop(proc)


def test_sigterm_while_slack_does_not_answer_at_start_up_exits_0_at_once(configure, env, tmp_path, hung_server):
    port, accepted = hung_server
    proc = spawn(["serve", "--port", str(free_port())], {**env, "SLACK_API_URL": f"http://127.0.0.1:{port}/api/"},
                 tmp_path / "serve.log")
    try:
        assert accepted.wait(30)  # auth.test is waiting on a Slack that never answers
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
        assert "stopped before start-up finished" in proc.log_path.read_text()
    finally:
        stop(proc)


def test_json_logs_carry_fields_and_never_a_secret(monkeypatch):
    token, signing = "xoxb-1234-5678-abcdefabcdef", "0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("SLACK_BOT_TOKEN", token)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", signing)
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2-secret@redis:6379/0")
    formatter = logs.JsonFormatter(logs.secrets_from_env())

    def line(msg, *args, **extra):
        record = logging.LogRecord("meshbot.x", logging.INFO, __file__, 1, msg, args, None)
        record.__dict__.update(extra)
        return formatter.format(record)

    out = json.loads(line("posting with %s and %s to %s", token, signing, "redis://:hunter2-secret@redis"))
    assert out["level"] == "info" and out["logger"] == "meshbot.x"
    assert token not in out["msg"] and signing not in out["msg"] and "hunter2-secret" not in out["msg"]
    assert "xapp-" not in line("xapp-1-A0-123-abc")
    assert "t0ps3cret" not in line("Failed to connect to wss://wss-primary.slack.com/link/?ticket=t0ps3cret&app_id=A1")
    assert "T1/B2/s3cr3t" not in line("Retrying POST https://hooks.slack.com/commands/T1/B2/s3cr3t (429)")
    assert json.loads(line("ignored", fields={"who": "U1", "outcome": "queued"}))["outcome"] == "queued"


def test_socket_mode_needs_no_signing_secret(slack):
    secrets = Secrets(slack_bot_token="xoxb-test", slack_app_token="xapp-test", slack_api_url=slack.api_url,
                      redis_url=CLOSED_REDIS_URL)
    assert asyncio.run(build_app(Config(), secrets, socket_mode=True)) is not None
