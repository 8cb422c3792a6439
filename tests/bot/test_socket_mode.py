"""`meshbot serve --socket` as a real process: Slack's traffic over Socket Mode (the stand-in's WebSocket end),
no signing secret, the real Redis, and HTTP for the probes only."""

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import slack_requests as sr
from conftest import eventually, free_port, sigterm_waits_for, spawn, stop
from rq.job import Job
from rq.serializers import JSONSerializer

from bot.slackstub import envelope


@pytest.fixture
def socket_serve(env, slack, redis, tmp_path):
    """Start `meshbot serve --socket` (once the config is written) with an app-level token and no signing
    secret, and wait until it holds a Socket Mode connection; returns (process, Socket Mode end, health URL)."""
    started = []

    def start():
        port = free_port()
        sock = slack.socket_mode()
        proc_env = {**env, "SLACK_APP_TOKEN": "xapp-1-A1-" + secrets.token_hex(12), "SLACK_SIGNING_SECRET": ""}
        proc = spawn(["serve", "--socket", "--port", str(port)], proc_env, tmp_path / f"serve-{len(started)}.log")
        proc.app_token = proc_env["SLACK_APP_TOKEN"]
        started.append(proc)

        def connected():
            assert proc.poll() is None, proc.log_path.read_text()
            return sock.connected

        eventually(connected, timeout=30)
        return proc, sock, f"http://127.0.0.1:{port}"

    yield start
    for proc in started:
        stop(proc)


def payload(redis, job_id):
    return Job.fetch(job_id, connection=redis, serializer=JSONSerializer).args[0]


def test_command_over_socket_mode_is_acked_on_the_socket_and_enqueues_one_job(configure, socket_serve, slack,
                                                                               redis, jobs, env):
    configure({"prod": {"kubeconfig": "/nonexistent"}}, default_cluster="prod")
    proc, sock, base = socket_serve()
    # Socket URLs come from apps.connections.open, asked with the app-level token (the bot token is for the rest).
    # The first URL is asked for before connecting (a refused token must stop start-up, see bot/serve.py).
    opened = slack.to("apps.connections.open")
    assert opened and {c.headers["Authorization"] for c in opened} == {f"Bearer {proc.app_token}"}

    ack = sock.ack(sock.push(envelope(sr.command("check mixer", slack.response_url))))  # within Slack's 3 s
    assert set(ack) == {"envelope_id", "payload"}
    assert "Checking mixer on prod" in ack["payload"]["text"]
    [job_id] = jobs()
    assert payload(redis, job_id) == {
        "kind": "check", "targets": ["mixer"], "cluster": "prod",
        "origin": {"source": "command", "user": "U1", "channel": "C1", "user_name": "alice", "channel_name": "ops",
                   "team": "T1", "thread_ts": None}}

    typo = sock.ack(sock.push(envelope(sr.command("chekc mixer", slack.response_url))))
    assert "Did you mean `/mesh check mixer`?" in typo["payload"]["text"]
    assert jobs() == [job_id]

    # HTTP serves the probes only: there is no /slack/events to forge a request to, signed or not.
    http = httpx.Client(timeout=10)
    assert http.get(base + "/healthz").status_code == 200
    assert http.get(base + "/readyz").status_code == 200
    forged = sr.Sender(base + "/slack/events", "not-the-secret")
    assert forged.post(sr.command("check pilot", slack.response_url)).status_code == 404
    assert forged.post(sr.command("check pilot", slack.response_url), signed=False).status_code == 404
    assert jobs() == [job_id]

    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(10) == 0  # SIGTERM: the socket is closed and the process ends cleanly
    log = proc.log_path.read_text()
    assert '"outcome": "queued"' in log and '"outcome": "invalid"' in log
    assert proc.app_token not in log and env["SLACK_BOT_TOKEN"] not in log


def test_socket_mode_reconnects_when_slack_refreshes_the_connection(configure, socket_serve, slack, redis, jobs):
    configure({"prod": {"kubeconfig": "/nonexistent"}}, default_cluster="prod")
    _, sock, _ = socket_serve()
    urls, hellos = len(slack.to("apps.connections.open")), sock.hellos
    sock.disconnect("refresh_requested")
    # a new URL, a new connection with its hello, and the old one closed
    sock.wait_for(lambda s: s.hellos == hellos + 1 and s.connected == 1, timeout=10)
    assert len(slack.to("apps.connections.open")) > urls
    ack = sock.ack(sock.push(envelope(sr.click("check mixer on prod", slack.response_url))))
    assert "payload" not in ack  # a click is acked empty; its answer goes to response_url once queued
    reply = slack.wait_for(lambda s: s.to("response_url"))[0]
    assert "Checking mixer on prod" in reply.params["text"]
    [job_id] = jobs()
    assert payload(redis, job_id)["origin"]["source"] == "click"


def test_sigterm_lets_a_reply_in_flight_finish_then_closes_the_socket(configure, socket_serve, slack, jobs):
    configure({"prod": {"kubeconfig": "/nonexistent"}}, default_cluster="prod")
    gate = slack.hold("response_url")
    proc, sock, _ = socket_serve()
    assert "payload" not in sock.ack(sock.push(envelope(sr.click("check mixer on prod", slack.response_url))))
    slack.wait_for(lambda s: s.to("response_url"))  # the click's reply, sent after the ack, is held
    sigterm_waits_for(proc, gate)
    assert sock.connected == 0 and len(jobs()) == 1


def test_readiness_follows_the_socket(configure, socket_serve, slack):
    configure({"prod": {"kubeconfig": "/nonexistent"}}, default_cluster="prod")
    _, sock, base = socket_serve()
    http = httpx.Client(timeout=10)
    assert http.get(base + "/readyz").status_code == 200
    sock.stop()  # Slack's end is gone: no connection, and none to be had
    eventually(lambda: http.get(base + "/readyz").status_code == 503, timeout=30)
    assert http.get(base + "/readyz").text == "not connected to Slack\n"
    assert http.get(base + "/healthz").status_code == 200  # alive: it keeps trying to reconnect


def test_an_app_token_slack_refuses_is_one_clear_line_and_exit_2(configure, env, slack, tmp_path):
    configure({"prod": {"kubeconfig": "/nonexistent"}}, default_cluster="prod")
    # no slack.socket_mode(): the stand-in answers apps.connections.open with invalid_auth
    proc_env = {**os.environ, **env, "SLACK_APP_TOKEN": "xoxb-a-bot-token-pasted-here"}
    proc_env.pop("SLACK_SIGNING_SECRET")
    done = subprocess.run([sys.executable, "-m", "bot.cli", "serve", "--socket", "--port", "0"], env=proc_env,
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 2
    assert "Slack refused SLACK_APP_TOKEN for Socket Mode (invalid_auth)" in done.stderr
    assert "Traceback" not in done.stderr and "xoxb-a-bot-token-pasted-here" not in done.stderr
