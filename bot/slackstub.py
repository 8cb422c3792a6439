"""Slack, stood in for on this machine: its Web API, Socket Mode, and requests signed as Slack signs them.

``SlackStub`` serves the Web API methods meshbot calls (and response_url, and file
uploads) on loopback, records every call, tells listeners about it, and answers
errors and rate limits on demand. The ``command``/``click``/``event`` builders make
request bodies exactly as Slack sends them, and ``sign`` signs them (v0 HMAC-SHA256).
``SlackStub.socket_mode()`` adds Slack's Socket Mode end (``SocketMode``): a WebSocket
endpoint that ``apps.connections.open`` hands out, to which ``envelope`` turns those
same bodies into what Slack pushes instead.
`meshbot demo` and the tests both use it; nothing here is used in production.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode


@dataclass
class Call:
    method: str  # Web API method, or "upload" (files.uploadV2's file POST), or "response_url"
    params: dict
    headers: dict
    raw: str = field(repr=False, default="")


class SlackStub:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.calls: list[Call] = []
        self.failures: dict[str, list[tuple[int, dict, dict]]] = {}
        self.gates: dict[str, threading.Event] = {}  # see hold()
        self.channel_names: dict[str, str] = {}
        # Told of each call and the answer it gets, before the caller has that answer.
        self.listeners: list[Callable[[Call, dict], None]] = []
        self._changed = threading.Condition()
        self._ts = 1_700_000_000
        self.socket: SocketMode | None = None  # Socket Mode's end, once socket_mode() started it
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True
        self.base = f"http://{host}:{self.server.server_port}"
        self.api_url = self.base + "/api/"
        self.response_url = self.base + "/response"

    def start(self) -> SlackStub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.socket is not None:
            self.socket.stop()
        self.server.shutdown()
        self.server.server_close()

    def socket_mode(self) -> SocketMode:
        """Start Socket Mode's WebSocket end (once) on this stub's host; apps.connections.open then points at it."""
        if self.socket is None:
            self.socket = SocketMode(self.server.server_address[0])
        return self.socket

    def fail(self, method: str, status: int = 429, times: int = 1, retry_after: int = 1, error: str = "ratelimited"):
        """The next ``times`` calls of ``method`` get ``status`` (429 with Retry-After, or an error body)."""
        headers = {"Retry-After": str(retry_after)} if status == 429 else {}
        self.failures.setdefault(method, []).extend([(status, headers, {"ok": False, "error": error})] * times)

    def hold(self, method: str) -> threading.Event:
        """Calls of ``method`` (or "response_url") are recorded, then left unanswered until the returned event
        is set: a Slack call in flight, for as long as a test needs."""
        self.gates[method] = threading.Event()
        return self.gates[method]

    def to(self, method: str) -> list[Call]:
        with self._changed:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, predicate, timeout: float = 30.0):
        """Block until ``predicate(self)`` is truthy (re-checked on every call); returns its value."""
        with self._changed:
            value = self._changed.wait_for(lambda: predicate(self), timeout)
        assert value, f"timed out after {timeout}s; calls: {[c.method for c in self.calls]}"
        return value

    def _record(self, call: Call) -> None:
        with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    def _answer(self, method: str, params: dict) -> tuple[int, dict, dict]:
        with self._changed:
            planned = self.failures.get(method)
            if planned:
                return planned.pop(0)
            self._ts += 1
            ts = f"{self._ts}.000100"
        channel = params.get("channel") or params.get("channel_id") or "C1"
        ids = {name: cid for cid, name in self.channel_names.items()}
        ids.update({f"#{name}": cid for name, cid in ids.items()})
        if channel in ids:  # as Slack does: messages may be posted to a channel's name, updated only by its id
            if method == "chat.update":
                return 200, {}, {"ok": False, "error": "channel_not_found"}
            channel = ids[channel]
        if method == "apps.connections.open":  # a fresh ticket per call, as Slack's URLs are single-use
            if self.socket is None:
                return 200, {}, {"ok": False, "error": "invalid_auth"}
            return 200, {}, {"ok": True, "url": f"{self.socket.url}?ticket={uuid.uuid4()}&app_id=A1"}
        replies = {
            "auth.test": {"user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1", "user": "meshbot",
                          "url": "https://example.slack.com/"},
            "chat.postMessage": {"channel": channel, "ts": ts, "message": {"text": params.get("text")}},
            "chat.update": {"channel": channel, "ts": params.get("ts")},
            "chat.postEphemeral": {"message_ts": ts},
            "files.getUploadURLExternal": {"upload_url": f"{self.base}/upload/F{ts}", "file_id": f"F{ts}"},
            "files.completeUploadExternal": {"files": [{"id": "F1", "title": "file"}]},
            "conversations.info": {"channel": {"id": channel, "name": self.channel_names.get(channel, "general")}},
        }
        return 200, {}, {"ok": True, **replies.get(method, {})}


def _handler(stub: SlackStub):
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # else each keep-alive call costs ~40 ms

        def log_message(self, *args):
            pass

        def do_GET(self):  # Slack takes read methods' arguments in the query string too
            self.do_POST()

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            text = raw.decode("utf-8", "replace")
            headers = dict(self.headers.items())
            if self.path.startswith("/api/"):
                method, _, query = self.path[len("/api/"):].partition("?")
                if "json" in headers.get("Content-Type", ""):
                    params = json.loads(text or "{}")
                else:
                    params = dict(parse_qsl(text))
                params.update(parse_qsl(query))
                call = Call(method, params, headers, text)
                stub._record(call)
                self._wait_at_gate(method)
                status, extra, body = stub._answer(method, params)
                self._tell(call, body)
                self._send(status, extra, json.dumps(body).encode(), "application/json")
            else:
                kind = "upload" if self.path.startswith("/upload/") else "response_url"
                params = json.loads(text) if kind == "response_url" and text else {"bytes": len(raw)}
                call = Call(kind, params, headers, text)
                stub._record(call)
                self._wait_at_gate(kind)
                self._tell(call, {"ok": True})
                self._send(200, {}, b"OK", "text/plain")

        def _wait_at_gate(self, method):
            gate = stub.gates.get(method)
            if gate is not None:
                gate.wait(60)

        def _tell(self, call, answer):
            for listener in stub.listeners:
                try:
                    listener(call, answer)
                except Exception:  # a listener's bug must not turn into a Slack error for the app
                    logging.getLogger("meshbot.slackstub").exception("listener failed on %s", call.method)

        def _send(self, status, extra, body, content_type):
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


class SocketMode:
    """Slack's end of Socket Mode: a WebSocket endpoint on loopback (aiohttp, in a thread of its own).

    Each client that connects gets Slack's ``hello``; ``push`` sends it an envelope (see ``envelope``)
    and ``ack`` waits for its answer. Everything a client sends is recorded in ``received``."""

    def __init__(self, host: str = "127.0.0.1"):
        from aiohttp import web  # here: the demo and the HTTP-mode tests do without its import time

        self.received: list[dict] = []  # what clients sent: acks, {"envelope_id": ..., "payload": ...}
        self.hellos = 0  # connections that were sent hello, ever
        self._open: list = []  # open connections (aiohttp WebSocketResponse), oldest first
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        app = web.Application()
        app.router.add_get("/link/", self._serve)
        self._runner = web.AppRunner(app)
        self._run(self._start(web, host))
        self.url = f"ws://{host}:{self._runner.addresses[0][1]}/link/"  # as Slack's: wss://…/link/?ticket=…

    async def _start(self, web, host):
        await self._runner.setup()
        await web.TCPSite(self._runner, host, 0).start()

    def _run(self, coroutine, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _serve(self, request):
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse()  # answers the client's pings itself
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "num_connections": len(self._open) + 1,
                            "debug_info": {"host": "applink-stub", "build_number": 1,
                                           "approximate_connection_time": 18060},
                            "connection_info": {"app_id": "A1"}})
        with self._changed:
            self._open.append(ws)
            self.hellos += 1
            self._changed.notify_all()
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    with self._changed:
                        self.received.append(json.loads(message.data))
                        self._changed.notify_all()
        finally:
            with self._changed:
                self._open.remove(ws)
                self._changed.notify_all()
        return ws

    @property
    def connected(self) -> int:
        """How many clients are connected now."""
        with self._changed:
            return len(self._open)

    def wait_for(self, predicate, timeout: float = 30.0):
        """Block until ``predicate(self)`` is truthy (re-checked whenever a client connects, sends or leaves)."""
        with self._changed:
            value = self._changed.wait_for(lambda: predicate(self), timeout)
        assert value, f"timed out after {timeout}s; {len(self._open)} connected, received {self.received}"
        return value

    def push(self, message: dict) -> str | None:
        """Send ``message`` (an envelope, or a disconnect) on the newest connection; returns its envelope_id."""
        with self._changed:
            assert self._open, "no Socket Mode client is connected"
            ws = self._open[-1]
        self._run(ws.send_json(message))
        return message.get("envelope_id")

    def ack(self, envelope_id: str, timeout: float = 3.0) -> dict:
        """The client's answer to envelope ``envelope_id``; Slack waits 3 s for it."""
        def answered(stub):
            return next((m for m in stub.received if m.get("envelope_id") == envelope_id), None)
        return self.wait_for(answered, timeout)

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Tell the newest connection to go, as Slack does before it recycles one (reason: warning, link_disabled)."""
        self.push({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-stub"}})

    def stop(self) -> None:
        if self._loop.is_closed():  # stopped already
            return

        async def close():
            for ws in list(self._open):
                await ws.close()
            await self._runner.cleanup()

        self._run(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


# Requests as Slack sends them to the app.

_ids = itertools.count(1)


def sign(secret: str, body: str, timestamp: int | None = None) -> dict:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def command(text: str, response_url: str, user: str = "U1", channel: str = "C1", trigger_id: str | None = None,
            user_name: str = "alice", channel_name: str = "ops") -> str:
    return urlencode({
        "token": "legacy-verification-token", "team_id": "T1", "team_domain": "example", "channel_id": channel,
        "channel_name": channel_name, "user_id": user, "user_name": user_name, "command": "/mesh", "text": text,
        "api_app_id": "A1", "response_url": response_url, "trigger_id": trigger_id or f"trig.{next(_ids)}",
    })


def click(value: str, response_url: str, user: str = "U1", channel: str = "C1", action_id: str = "meshbot_run_rerun",
          trigger_id: str | None = None, label: str = "Re-run", message_ts: str = "1.000001") -> str:
    payload = {
        "type": "block_actions", "team": {"id": "T1", "domain": "example"},
        "user": {"id": user, "username": "alice", "team_id": "T1"}, "api_app_id": "A1",
        "token": "legacy-verification-token", "container": {"type": "message", "message_ts": message_ts},
        "trigger_id": trigger_id or f"trig.{next(_ids)}", "channel": {"id": channel, "name": "ops"},
        "message": {"ts": message_ts, "text": "x"}, "response_url": response_url,
        "actions": [{"type": "button", "action_id": action_id, "block_id": "b1", "value": value,
                     "text": {"type": "plain_text", "text": label}, "action_ts": "1.2"}],
    }
    return urlencode({"payload": json.dumps(payload)})


def event(event: dict, event_id: str | None = None) -> str:
    return json.dumps({
        "token": "legacy-verification-token", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
        "event": event, "event_id": event_id or f"Ev{next(_ids)}", "event_time": int(time.time()),
        "authorizations": [{"team_id": "T1", "user_id": "UBOT", "is_bot": True}],
    })


def mention(text: str, user: str = "U1", channel: str = "C1", ts: str = "1700000000.000100", **extra) -> dict:
    return {"type": "app_mention", "user": user, "text": f"<@UBOT> {text}", "ts": ts, "channel": channel,
            "event_ts": ts, **extra}


def envelope(body: str, envelope_id: str | None = None) -> dict:
    """What Slack pushes over Socket Mode instead of POSTing ``body`` (made by ``command``, ``click`` or ``event``).

    No signature: the socket the app opened with its app-level token is what vouches for the sender."""
    common = {"envelope_id": envelope_id or str(uuid.uuid4())}
    if body.startswith("{"):  # Events API
        return {**common, "type": "events_api", "accepts_response_payload": False, "retry_attempt": 0,
                "retry_reason": "", "payload": json.loads(body)}
    form = dict(parse_qsl(body))
    if "payload" in form:  # interactivity: buttons, shortcuts, modals
        payload = json.loads(form["payload"])
        return {**common, "type": "interactive",
                "accepts_response_payload": payload["type"] in ("view_submission", "block_suggestion"),
                "payload": payload}
    return {**common, "type": "slash_commands", "accepts_response_payload": True, "payload": form}
