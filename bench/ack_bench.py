"""Slack acknowledgement latency of `meshbot serve`, beside bare Bolt apps that only ack.

    python bench/ack_bench.py [--commands 200] [--concurrency 20] [--rounds 3]

The apps run as their own processes (the async ones behind the same aiohttp server), answer
signed `/mesh check mixer` commands from this process, and talk to a local
Slack stand-in and the local Redis (DB 12, flushed). There are three baselines:
Bolt's default AsyncApp; one built with meshbot's own Bolt setting
(process_before_response), which shows what meshbot's own work costs; and Bolt's
blocking App with a thread per request, the baseline of the earlier figures.
Rounds alternate between the apps so drift hits all. Then the time from a command to its finished
thread is measured with a real `meshbot worker` on simulated clusters.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import redis
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "bot")]

from slack_requests import Sender  # noqa: E402

import kubesim  # noqa: E402
from bot import slackstub as sr  # noqa: E402
from bot.slackstub import SlackStub  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/12"
MESHBOT, BARE, BARE_IN_THREAD = "meshbot serve", "bare Bolt app", "bare app, process_before_response"
BARE_THREADED = "bare blocking Bolt app, thread per request"
BASELINES = {BARE: "--bare-server", BARE_IN_THREAD: "--bare-server-in-thread", BARE_THREADED: "--bare-threaded-server"}


def bare_server(port: int, process_before_response: bool) -> None:
    """The baseline: Bolt's AsyncApp with the same client, served the same way, a handler that only acks. By
    default Bolt runs the listener as a task of its own and polls for its ack every 10 ms; with
    ``process_before_response`` it runs the listener in the request's own task, as meshbot does."""
    from slack_bolt.async_app import AsyncApp

    from bot.app import async_web_client
    from bot.config import Secrets
    from bot.serve import start_site, web_application

    env = Secrets.from_env()

    async def serve() -> None:
        app = AsyncApp(client=async_web_client(env), signing_secret=env.slack_signing_secret.get_secret_value(),
                       process_before_response=process_before_response)

        @app.command("/mesh")
        async def mesh(ack):
            await ack()

        await start_site(web_application(app, redis.Redis.from_url(env.redis_url)), "127.0.0.1", port)
        await asyncio.Event().wait()  # until the bench stops this process

    asyncio.run(serve())


def bare_threaded_server(port: int) -> None:
    """The baseline the earlier figures used: Bolt's blocking App with its defaults, a thread per request
    (the standard library's threading WSGI server), as meshbot itself was served before it moved to asyncio."""
    import socketserver
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from slack_bolt import App
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    from bot.app import web_client
    from bot.config import Secrets

    class Server(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True
        request_queue_size = 128

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    env = Secrets.from_env()
    app = App(client=web_client(env), signing_secret=env.slack_signing_secret.get_secret_value())

    @app.command("/mesh")
    def mesh(ack):
        ack()

    slack = SlackRequestHandler(app)

    def application(environ, start_response):
        if environ["PATH_INFO"] == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        return slack(environ, start_response)

    make_server("127.0.0.1", port, application, server_class=Server, handler_class=Quiet).serve_forever()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: list[str], env: dict, port: int | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(argv, env={**os.environ, **env}, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if port:
        deadline = time.monotonic() + 30
        while True:  # poll until it serves
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{argv} did not start")
            time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(10)


def burst(url: str, secret: str, response_url: str, n: int, concurrency: int) -> list[float]:
    """n signed commands, ``concurrency`` in flight. The client is asyncio + aiohttp: a thread-per-request
    client (httpx in a pool) spent several ms of CPU per request on the same two cores as the servers,
    inflating the very latency it measured."""

    async def run() -> list[float]:
        bodies = [sr.command("check mixer", response_url) for _ in range(n)]
        latencies: list[float] = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            async def one(body: str) -> None:
                headers = {"Content-Type": "application/x-www-form-urlencoded", **sr.sign(secret, body)}
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    text = await response.text()
                latencies.append((time.perf_counter() - started) * 1000)
                assert response.status == 200, text

            queue = iter(bodies)

            async def worker() -> None:
                for body in queue:
                    await one(body)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies

    return asyncio.run(run())


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1)]


def thread_time(env: dict, scenario: str, text: str, runs: int, work: Path, slack: SlackStub) -> list[float]:
    sim = kubesim.Simulator(kubesim.load(scenario)).start()
    try:
        kubeconfig = sim.write_kubeconfig(work / f"{scenario}.kubeconfig")
        Path(env["MESHBOT_CONFIG"]).write_text(yaml.safe_dump({"clusters": {"sim": {"kubeconfig": str(kubeconfig)}}}))
        serve_port = free_port()
        serve = start([sys.executable, "-m", "bot.cli", "serve", "--port", str(serve_port)], env, serve_port)
        worker = start([sys.executable, "-m", "bot.cli", "worker"], env)
        times = []
        try:
            sender = Sender(f"http://127.0.0.1:{serve_port}/slack/events", env["SLACK_SIGNING_SECRET"])
            for _ in range(runs + 1):  # the first one warms the worker up and is not counted
                before = len([c for c in slack.to("chat.update") if "Re-run" in str(c.params.get("blocks"))])
                started = time.perf_counter()
                sender.post(sr.command(text, slack.response_url))
                slack.wait_for(lambda s, before=before: len([c for c in s.to("chat.update")
                                                             if "Re-run" in str(c.params.get("blocks"))]) > before, 60)
                times.append((time.perf_counter() - started) * 1000)
        finally:
            stop(worker)
            stop(serve)
        return times[1:]
    finally:
        sim.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--thread-runs", type=int, default=5)
    args = parser.parse_args()

    slack = SlackStub().start()
    store = redis.Redis.from_url(REDIS_URL)
    store.flushdb()
    work = Path(tempfile.mkdtemp(prefix="ack-bench-"))
    env = {"SLACK_BOT_TOKEN": "xoxb-" + secrets.token_hex(8), "SLACK_SIGNING_SECRET": secrets.token_hex(16),
           "SLACK_API_URL": slack.api_url, "REDIS_URL": REDIS_URL, "MESHBOT_CONFIG": str(work / "meshbot.yaml")}
    Path(env["MESHBOT_CONFIG"]).write_text(yaml.safe_dump({"clusters": {"prod": {}}, "default_cluster": "prod"}))

    ports = {name: free_port() for name in (MESHBOT, *BASELINES)}
    procs = [start([sys.executable, "-m", "bot.cli", "serve", "--port", str(ports[MESHBOT])], env, ports[MESHBOT])]
    procs += [start([sys.executable, __file__, flag, str(ports[name])], env, ports[name])
              for name, flag in BASELINES.items()]
    latencies: dict[str, list[float]] = {name: [] for name in ports}
    try:
        for port in ports.values():  # warm-up, not counted
            burst(f"http://127.0.0.1:{port}/slack/events", env["SLACK_SIGNING_SECRET"], slack.response_url, 40,
                  args.concurrency)
        for _ in range(args.rounds):
            for name, port in ports.items():
                latencies[name] += burst(f"http://127.0.0.1:{port}/slack/events", env["SLACK_SIGNING_SECRET"],
                                         slack.response_url, args.commands, args.concurrency)
    finally:
        for proc in procs:
            stop(proc)
    queued = store.llen("rq:queue:meshbot")
    store.flushdb()

    print(f"ack latency: {args.commands} `/mesh check mixer` commands, {args.concurrency} at a time, "
          f"{args.rounds} alternating rounds (ms)")
    print("| app | commands | p50 | p99 | max |\n| --- | --- | --- | --- | --- |")
    for name, values in latencies.items():
        print(f"| {name} | {len(values)} | {statistics.median(values):.1f} | {pct(values, 99):.1f} "
              f"| {max(values):.1f} |")
    for baseline in BASELINES:
        print(f"p99 ratio meshbot / {baseline}: {pct(latencies[MESHBOT], 99) / pct(latencies[baseline], 99):.2f}")
    print(f"jobs enqueued by meshbot: {queued}")

    print("\ncommand → finished thread (final chat.update seen by the Slack stand-in), real worker (ms)")
    print("| scenario | command | runs | median | max |\n| --- | --- | --- | --- | --- |")
    for scenario, text in (("istio-0.5.1-healthy", "check clock"), ("istio-0.5.1-fd-crash", "check all")):
        times = thread_time(env, scenario, text, args.thread_runs, work, slack)
        print(f"| {scenario} | `/mesh {text}` | {len(times)} | {statistics.median(times):.0f} | {max(times):.0f} |")
        store.flushdb()
    slack.stop()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--bare-threaded-server":
        bare_threaded_server(int(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1].startswith("--bare-server"):
        bare_server(int(sys.argv[2]), process_before_response=sys.argv[1] == "--bare-server-in-thread")
    else:
        sys.exit(main())
