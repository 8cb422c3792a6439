"""The bot's real parts for tests: Redis (a dedicated DB), the Slack stand-in, the Bolt app over HTTP, a worker."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import redis as redis_lib
import yaml
from slack_requests import Sender

from bot import queue as jobqueue
from bot.app import build_app
from bot.config import Secrets, load_config
from bot.serve import BackgroundServer, web_application
from bot.slackstub import SlackStub

TEST_REDIS = os.environ.get("MESHBOT_TEST_REDIS", "127.0.0.1:6379")  # host:port; parallel checkouts use their own
REDIS_DB = 11  # tests/bot's DB, flushed around every test; a module may take another with @pytest.mark.redis_db(N)
CLOSED_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def redis_url(db: int) -> str:
    return f"redis://{TEST_REDIS}/{db}"


def pytest_configure(config):
    config.addinivalue_line("markers", "redis_db(n): the Redis DB the redis and env fixtures use (default 11)")


@pytest.fixture
def redis_db(request) -> int:
    """Modules whose worker processes must not see each other's jobs take DBs of their own."""
    marker = request.node.get_closest_marker("redis_db")
    return marker.args[0] if marker else REDIS_DB


@pytest.fixture
def redis(redis_db):
    connection = redis_lib.Redis.from_url(redis_url(redis_db))
    connection.flushdb()
    yield connection
    connection.flushdb()


@pytest.fixture
def slack():
    stub = SlackStub().start()
    yield stub
    stub.stop()


@pytest.fixture
def env(slack, tmp_path, redis_db):
    """The environment of both processes; the token and signing secret are fresh random strings."""
    return {
        "SLACK_BOT_TOKEN": "xoxb-" + secrets.token_hex(12),
        "SLACK_SIGNING_SECRET": secrets.token_hex(16),
        "SLACK_API_URL": slack.api_url,
        "REDIS_URL": redis_url(redis_db),
        "MESHBOT_CONFIG": str(tmp_path / "meshbot.yaml"),
    }


@pytest.fixture
def configure(env):
    """Write the config file: ``configure(clusters={...}, **top_level)``."""

    def write(clusters: dict | None = None, **rest) -> Path:
        path = Path(env["MESHBOT_CONFIG"])
        path.write_text(yaml.safe_dump({"clusters": clusters or {}, **rest}))
        return path

    write()
    return write


@pytest.fixture
def serve(env, slack, redis):
    """Start the real Bolt app over HTTP on a free loopback port; returns a Sender for /slack/events."""
    servers = []

    def start(redis_url: str | None = None) -> Sender:
        secrets_ = Secrets.from_env({**env, "REDIS_URL": redis_url or env["REDIS_URL"]})
        connection = jobqueue.connect(secrets_.redis_url)

        async def application():
            return web_application(await build_app(load_config(env["MESHBOT_CONFIG"]), secrets_, redis=connection),
                                   connection)

        server = BackgroundServer(application)
        servers.append(server)
        sender = Sender(f"http://127.0.0.1:{server.port}/slack/events", env["SLACK_SIGNING_SECRET"])
        sender.base = f"http://127.0.0.1:{server.port}"
        return sender

    yield start
    for server in servers:
        server.stop()


def spawn(args: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    """`python -m bot.cli ARGS` with ``env`` added, in a process group of its own, its output in ``log_path``."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", *args], env={**os.environ, **env}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=Path(__file__).resolve().parents[2])
    proc.log_path = log_path
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(proc: subprocess.Popen, base: str) -> None:
    """Poll ``base``/healthz until it answers 200; fail at once with the log if ``proc`` died."""
    def up():
        assert proc.poll() is None, proc.log_path.read_text()
        try:
            return httpx.get(base + "/healthz").status_code == 200
        except httpx.TransportError:
            return False

    eventually(up, timeout=30)


def sigterm_waits_for(proc: subprocess.Popen, gate: threading.Event) -> None:
    """SIGTERM ``proc`` while a Slack call it made is held at ``gate`` (SlackStub.hold): it must wait for that
    call's answer, then exit 0, saying "stopped" only after the answer was let go."""
    import json
    import time
    from datetime import UTC, datetime

    os.killpg(proc.pid, signal.SIGTERM)
    eventually(lambda: "stopping" in proc.log_path.read_text())
    assert proc.poll() is None, proc.log_path.read_text()  # still waiting on the held call
    released = time.time()
    gate.set()
    assert proc.wait(15) == 0
    lines = [json.loads(line) for line in proc.log_path.read_text().splitlines() if line.startswith("{")]
    [stopped] = [line["ts"] for line in lines if line.get("msg") == "stopped"]
    assert datetime.strptime(stopped, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp() >= released - 0.001
    assert not [line for line in lines if line["level"] in ("warning", "error")]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def worker(env, tmp_path):
    """Start real `meshbot worker` processes; yields a starter."""
    started = []

    def start() -> subprocess.Popen:
        started.append(spawn(["worker"], env, tmp_path / f"worker-{len(started)}.log"))
        return started[-1]

    yield start
    for proc in started:
        stop(proc)


@pytest.fixture
def hung_server():
    """A loopback TCP server that accepts connections and never answers: yields (port, accepted), where
    ``accepted`` is set at the first connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted, held = threading.Event(), []

    def accept():
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:  # closed at teardown
                return
            accepted.set()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1], accepted
    listener.close()
    for conn in held:
        conn.close()


@pytest.fixture
def hung_redis(hung_server):
    """A Redis that accepts connections and never answers: (URL, accepted)."""
    port, accepted = hung_server
    return f"redis://127.0.0.1:{port}/0", accepted


@pytest.fixture
def jobs(redis):
    """The job ids in the queue, in order."""
    return lambda: [j.decode() for j in redis.lrange(f"rq:queue:{jobqueue.QUEUE_NAME}", 0, -1)]


@pytest.fixture
def audit_lines(caplog):
    caplog.set_level(logging.INFO, logger="meshbot.audit")
    import json

    return lambda: [json.loads(r.getMessage()) for r in caplog.records if r.name == "meshbot.audit"]


def eventually(probe, timeout: float = 10.0, interval: float = 0.01):
    """Poll ``probe`` until it returns something truthy, or fail at the deadline."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"still {value!r} after {timeout}s"
        time.sleep(interval)


def parent_posts(slack):
    return [c for c in slack.to("chat.postMessage") if not c.params.get("thread_ts")]


def replies(slack):
    return [c for c in slack.to("chat.postMessage") if c.params.get("thread_ts")]


def finished(slack):
    """The parent's final update: the one that carries the Re-run button."""
    return [c for c in slack.to("chat.update") if "Re-run" in str(c.params.get("blocks"))]


@pytest.fixture
def job_in_flight(simulate, configure, serve, slack, worker):
    """A real worker in the middle of `/mesh check envoy mixer`: every read of Mixer's metrics takes 3 s.

    Returns (simulator, the worker process)."""
    import slack_requests as sr

    sim, kubeconfig = simulate("istio-0.5.1-fd-crash", faults=[{"path": "istio-mixer:9093/proxy/metrics", "delay": 3}])
    configure({"prod": {"kubeconfig": str(kubeconfig)}})
    app = serve()
    proc = worker()
    app.post(sr.command("check envoy mixer", slack.response_url))
    eventually(lambda: any("istio-mixer:9093" in r.path for r in sim.requests), timeout=30)
    assert not finished(slack)
    return sim, proc
