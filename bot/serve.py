"""`meshbot serve`: the Bolt app over HTTP (or Socket Mode), plus /healthz, /readyz and /metrics.

Bolt's own App.start() binds 0.0.0.0 whatever it is told, so the app is served
with the standard library's WSGI server on the host given, one thread per request.
"""

from __future__ import annotations

import gc
import logging
import signal
import socketserver
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis as redis_lib
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot import logs, metrics
from bot import queue as jobqueue
from bot.app import build_app
from bot.config import ConfigurationError, Secrets, load_config

log = logging.getLogger("meshbot.serve")
EVENTS_PATH = "/slack/events"


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    # A thread per request: Slack waits 3 s for nobody, so one slow request must not hold up the next.
    # Not daemons, so that server_close() on SIGTERM waits for the requests in flight.
    daemon_threads = False
    block_on_close = True
    request_queue_size = 128  # socketserver's 5 resets connections under a burst of 20 commands


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):  # request lines are noise; the audit log says what happened
        pass


def wsgi_app(bolt_app, redis, connected=lambda: True):
    """/slack/events to Bolt (when given one); /healthz always 200; /readyz 200 only while Redis answers and
    ``connected()`` (Socket Mode: the socket is up); /metrics in Prometheus' text format. ``redis`` should
    have a short timeout: probes give up after 3 s."""
    slack = SlackRequestHandler(bolt_app) if bolt_app is not None else None

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == EVENTS_PATH and slack is not None:
            return slack(environ, start_response)
        if path in ("/healthz", "/readyz"):
            trouble = None if path == "/healthz" else _not_ready(redis, connected)
            start_response("503 Service Unavailable" if trouble else "200 OK", [("Content-Type", "text/plain")])
            return [(trouble or "ok").encode() + b"\n"]
        if path == "/metrics":
            start_response("200 OK", [("Content-Type", metrics.CONTENT_TYPE)])
            return [metrics.exposition(redis)]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return application


def _not_ready(redis, connected) -> str | None:
    if not connected():
        return "not connected to Slack"
    try:
        redis.ping()
    except redis_lib.RedisError:
        return "redis unreachable"
    return None


def make_http_server(application, host: str, port: int) -> WSGIServer:
    return make_server(host, port, application, server_class=_Server, handler_class=_Quiet)


def main(args) -> int:
    logs.configure()
    config, secrets = load_config(), Secrets.from_env()
    if args.socket and secrets.slack_app_token is None:
        raise ConfigurationError("--socket needs SLACK_APP_TOKEN")
    redis = jobqueue.connect(secrets.redis_url)
    app = build_app(config, secrets, redis=redis, socket_mode=args.socket)
    if args.socket:
        return _serve_socket_mode(app, secrets, redis, args)
    server = make_http_server(wsgi_app(app, redis), args.host, args.port)
    _freeze_startup_objects()
    # SIGTERM (a rollout, a scale-down): stop accepting, answer the requests in flight, exit 0.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("serving http://%s:%s%s", args.host, server.server_port, EVENTS_PATH)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    log.info("stopped")
    return 0


def _serve_socket_mode(app, secrets: Secrets, redis, args) -> int:
    """Slack's traffic over the socket; HTTP serves the probes and /metrics only, and /readyz follows the socket.

    slack_sdk's built-in client: on a refresh Slack asks for while leaving the old connection open, it reads
    the new one only once the old one's read has timed out (3 s). websocket-client's client waited there for
    its ping interval (10 s) instead, so the built-in one is the lesser wait."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler
    from slack_sdk.errors import SlackApiError

    handler = SocketModeHandler(app, secrets.slack_app_token.get_secret_value())
    server = make_http_server(wsgi_app(None, redis, connected=handler.client.is_connected), args.host, args.port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _freeze_startup_objects()
    try:
        handler.connect()
    except SlackApiError as exc:
        raise ConfigurationError(f"Slack refused SLACK_APP_TOKEN for Socket Mode ({exc.response.get('error')}); "
                                 "it must be an app-level token (xapp-) with connections:write") from None
    log.info("Socket Mode; health on http://%s:%s/healthz", args.host, server.server_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    handler.close()
    server.shutdown()
    log.info("stopped")
    return 0


def _freeze_startup_objects() -> None:
    # The check catalogue pulls in the Kubernetes client: ~10^5 long-lived objects that every full
    # garbage collection would walk again, in the middle of some request's ack. Freeze them.
    gc.collect()
    gc.freeze()
