"""`meshbot serve`: the Bolt app on asyncio over HTTP (or Socket Mode), plus /healthz, /readyz and /metrics.

Why asyncio: Slack waits 3 s for an ack and the bench holds meshbot to 1.5× a bare
Bolt app. With a thread per request, each of the ack's blocking socket calls (the
Redis enqueue, the audit line) handed the GIL over among ~20 request threads and
doubled the p99; on one event loop the same calls cost what they take.

Bolt's own AsyncApp.start() binds 0.0.0.0 whatever it is told, so the app is
served by an aiohttp server of our own on the host given.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import json
import logging
import signal
import threading
import urllib.parse
from collections.abc import Awaitable, Callable

import redis as redis_lib
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_sdk.signature import SignatureVerifier

from bot import logs, metrics
from bot import queue as jobqueue
from bot.app import build_app
from bot.config import ConfigurationError, Secrets, load_config

log = logging.getLogger("meshbot.serve")
EVENTS_PATH = "/slack/events"
MAX_BODY = 1 << 20  # Slack's payloads are kilobytes; a modal's state stays far below this
# The envelope fields that Bolt's middleware looks into before any listener runs, with the types Slack sends.
ENVELOPE_FIELDS = {"event": dict, "authorizations": list, "actions": list, "view": dict, "container": dict,
                   "message": dict, "team": (dict, str), "user": (dict, str), "channel": (dict, str),
                   "enterprise": (dict, str), "type": str, "team_id": str, "api_app_id": str, "command": str,
                   "text": str, "user_id": str, "channel_id": str, "trigger_id": str, "event_id": str}
DRAIN_SECONDS = 10  # on SIGTERM, how long requests and lazy listeners in flight may take to finish, in all


def web_application(bolt_app, redis, connected: Callable[[], Awaitable[bool]] | None = None) -> web.Application:
    """/slack/events to Bolt (when given one); /healthz always 200; /readyz 200 only while Redis answers and
    ``connected()`` (Socket Mode: the socket is up); /metrics in Prometheus' text format. ``redis`` should
    have a short timeout: probes give up after 3 s. Probes call Redis off the event loop."""

    # The secret Bolt verifies with (it has no public getter); None for a Socket Mode app, which has no HTTP.
    verify = slack_gate(bolt_app._signing_secret or None) if bolt_app is not None else None

    async def events(request: web.Request) -> web.Response:
        refused = await verify(request)
        if refused is not None:
            return refused
        try:
            response = await bolt_app.async_dispatch(await to_bolt_request(request))
        except Exception:  # noqa: BLE001 - signed yet odd enough to trip Bolt: a 400, never a 500
            log.exception("a signed request could not be handled")
            return web.Response(status=400, text="could not handle this request\n")
        if response.status >= 500:  # Bolt caught a middleware's or listener's error and logged it
            return web.Response(status=400, text="could not handle this request\n")
        return await to_aiohttp_response(response)

    async def healthz(_) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_) -> web.Response:
        trouble = await _not_ready(redis, connected)
        return web.Response(status=503 if trouble else 200, text=(trouble or "ok") + "\n")

    async def metrics_text(_) -> web.Response:
        body = await asyncio.to_thread(metrics.exposition, redis)
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})

    application = web.Application(client_max_size=MAX_BODY)
    if bolt_app is not None:
        application.router.add_post(EVENTS_PATH, events)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", readyz)
    application.router.add_get("/metrics", metrics_text)
    return application


def slack_gate(signing_secret: str | None) -> Callable[[web.Request], Awaitable[web.Response | None]]:
    """What stands before Bolt: the size, the signature (over the raw bytes, before anything is parsed) and
    the shape of the body. Returns None for a request Bolt may parse, else the 4xx to answer with; Bolt
    then checks the signature again, which costs one HMAC."""
    verifier = SignatureVerifier(signing_secret) if signing_secret else None

    async def gate(request: web.Request) -> web.Response | None:
        try:
            raw = await request.read()  # at most the application's client_max_size; kept for Bolt to read again
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="request too large\n")
        except (ConnectionError, ValueError):  # truncated or badly chunked body
            return web.Response(status=400, text="could not read the request\n")
        if verifier is not None and not _signed(verifier, raw, request.headers):
            return web.Response(status=401, text="invalid signature\n")
        problem = _shape_problem(raw, request.headers.get("Content-Type", ""))
        if problem:
            return web.Response(status=400, text=problem + "\n")
        return None

    return gate


def _signed(verifier: SignatureVerifier, raw: bytes, headers) -> bool:
    timestamp, signature = headers.get("X-Slack-Request-Timestamp", ""), headers.get("X-Slack-Signature", "")
    if not (timestamp.isascii() and timestamp.isdigit()) or not signature.isascii():
        return False
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:  # Slack signs UTF-8 text; nothing else can carry its signature
        return False
    return verifier.is_valid(body, timestamp, signature)


def _shape_problem(raw: bytes, content_type: str) -> str | None:
    """Why Bolt could not read this body (it expects a JSON object, or a form whose `payload` is one)."""
    text = raw.decode("utf-8", errors="replace")
    try:
        if content_type.split(";")[0].strip() == "application/json" or text.startswith("{"):
            parsed = json.loads(text) if text else {}
        else:
            form = dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
            parsed = json.loads(form["payload"]) if "payload" in form else form
    except (ValueError, RecursionError):
        return "the body is not valid JSON"
    if not isinstance(parsed, dict):
        return "the body must be a JSON object"
    for key, types in ENVELOPE_FIELDS.items():
        if parsed.get(key) is not None and not isinstance(parsed[key], types):
            return f"`{key}` has the wrong type"
    return None


async def _not_ready(redis, connected) -> str | None:
    if connected is not None and not await connected():
        return "not connected to Slack"
    try:
        await asyncio.to_thread(redis.ping)
    except redis_lib.RedisError:
        return "redis unreachable"
    return None


async def start_site(application: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``application`` on host:port (0: any free port); returns the runner and the port bound."""
    # aiohttp waits up to shutdown_timeout for handlers, then as long again for the cancelled ones.
    runner = web.AppRunner(application, access_log=None, shutdown_timeout=DRAIN_SECONDS / 4)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=128).start()  # a burst of 20 commands must not be refused
    return runner, runner.addresses[0][1]


class BackgroundServer:
    """An aiohttp application served from a thread with an event loop of its own: the worker's probes, the
    demo and the tests. ``make`` is a coroutine function returning the application, run on that loop."""

    def __init__(self, make: Callable[[], Awaitable[web.Application]], host: str = "127.0.0.1", port: int = 0):
        self.loop = asyncio.new_event_loop()
        started: concurrent.futures.Future = concurrent.futures.Future()
        self.thread = threading.Thread(target=self._run, args=(make, host, port, started), daemon=True)
        self.thread.start()
        self.runner, self.port = started.result(60)

    def _run(self, make, host, port, started) -> None:
        asyncio.set_event_loop(self.loop)

        async def start():
            return await start_site(await make(), host, port)

        try:
            started.set_result(self.loop.run_until_complete(start()))
        except BaseException as exc:  # noqa: BLE001 - handed to the constructor, which raises it
            started.set_exception(exc)
        else:
            self.loop.run_forever()
        leftover = asyncio.all_tasks(self.loop)  # e.g. a lazy listener still replying when a test ended
        for task in leftover:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()

    def stop(self) -> None:
        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)


def main(args) -> int:
    logs.configure()
    config, secrets = load_config(), Secrets.from_env()
    if args.socket and secrets.slack_app_token is None:
        raise ConfigurationError("--socket needs SLACK_APP_TOKEN")
    return asyncio.run(_serve(config, secrets, args))


async def _serve(config, secrets: Secrets, args) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    starting = asyncio.ensure_future(_start(config, secrets, args))
    stop_asked = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({starting, stop_asked}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # SIGTERM while Slack is slow or unreachable: nothing taken yet, nothing to finish
        starting.cancel()
        log.info("stopped before start-up finished")
        return 0
    runner, socket = starting.result()
    await stop_asked
    log.info("stopping: finishing what is in flight")
    # SIGTERM (a rollout, a scale-down): take nothing new, finish what was taken, exit 0; all within
    # DRAIN_SECONDS, well inside Kubernetes' default grace period of 30 s.
    deadline = loop.time() + DRAIN_SECONDS
    if socket:
        _stop_reading(socket)
    await runner.cleanup()  # stops accepting and waits for the requests in flight
    await _finish_in_flight(deadline, socket)
    if socket:
        await socket.close_async()
    log.info("stopped")
    return 0


async def _start(config, secrets: Secrets, args):
    """Build the app, bind the port, connect Socket Mode; returns the runner and the handler (None over HTTP)."""
    redis = jobqueue.connect(secrets.redis_url)
    app = await build_app(config, secrets, redis=redis, socket_mode=args.socket)
    socket = _socket_mode_handler(app, secrets) if args.socket else None
    application = (web_application(None, redis, connected=socket.client.is_connected) if socket
                   else web_application(app, redis))
    runner, port = await start_site(application, args.host, args.port)
    _freeze_startup_objects()
    if not socket:
        log.info("serving http://%s:%s%s", args.host, port, EVENTS_PATH)
        return runner, None
    try:
        await _connect(socket)
    except BaseException:  # refused, or cancelled by SIGTERM: close its aiohttp session on the way out
        await socket.close_async()
        raise
    log.info("Socket Mode; health on http://%s:%s/healthz", args.host, port)
    return runner, socket


def _socket_mode_handler(app, secrets: Secrets):
    """Slack's traffic over the socket; HTTP then serves the probes and /metrics only."""
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    return AsyncSocketModeHandler(app, secrets.slack_app_token.get_secret_value())


async def _connect(handler) -> None:
    from slack_sdk.errors import SlackApiError

    try:  # the first URL asked for here: connect_async() would retry a refused token forever
        handler.client.wss_uri = await handler.client.issue_new_wss_url()
    except SlackApiError as exc:
        raise ConfigurationError(f"Slack refused SLACK_APP_TOKEN for Socket Mode ({exc.response.get('error')}); "
                                 "it must be an app-level token (xapp-) with connections:write") from None
    await handler.connect_async()


def _stop_reading(handler) -> None:
    """Read no more envelopes, but keep the socket open: those already read still need their acks sent."""
    client = handler.client
    client.auto_reconnect_enabled = client.default_auto_reconnect_enabled = False
    for task in (client.message_receiver, client.current_session_monitor):
        if task is not None:
            task.cancel()


async def _finish_in_flight(deadline: float, socket=None) -> None:
    """Wait, until ``deadline``, for the tasks still running: listeners of envelopes already read, and the lazy
    listeners (a click's or a mention's reply) that run after their ack."""
    loop = asyncio.get_running_loop()
    forever = {asyncio.current_task()} | ({socket.client.message_processor} if socket else set())
    while True:
        pending = asyncio.all_tasks() - forever
        unread = socket is not None and not socket.client.message_queue.empty()
        left = deadline - loop.time()
        if not (pending or unread) or left <= 0:
            break
        if pending:  # short waits: a listener may start another task (its lazy reply) meanwhile
            await asyncio.wait(pending, timeout=min(left, 0.05))
        else:  # envelopes read, not yet handed to a listener
            await asyncio.sleep(0.01)
    if pending:
        log.warning("stopping with %d task(s) unfinished after %s s", len(pending), DRAIN_SECONDS)


def _freeze_startup_objects() -> None:
    # The check catalogue pulls in the Kubernetes client: ~10^5 long-lived objects that every full
    # garbage collection would walk again, in the middle of some request's ack. Freeze them.
    gc.collect()
    gc.freeze()
