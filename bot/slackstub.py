"""Slack, stood in for on this machine: its Web API, Socket Mode, and requests signed as Slack signs them.

``SlackStub`` serves the Web API methods meshbot calls (and response_url, and file
uploads) on loopback, records every call, tells listeners about it, and answers
errors and rate limits on demand. It also keeps what was posted, as Slack does: ``messages`` holds
each channel's messages (with their ``metadata``, thread and files), which chat.update edits and
conversations.history / conversations.replies read back, in Slack's response shapes. The
``command``/``click``/``event`` builders make request bodies exactly as Slack sends them, and
``sign`` signs them (v0 HMAC-SHA256).
``SlackStub.socket_mode()`` adds Slack's Socket Mode end (``SocketMode``): a WebSocket
endpoint that ``apps.connections.open`` hands out, to which ``envelope`` turns those
same bodies into what Slack pushes instead.
`meshbot demo` and the tests both use it; nothing here is used in production.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import logging
import re
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
        self.failures: dict[str, list[tuple[int, dict, dict, bool]]] = {}
        self.messages: dict[str, list[dict]] = {}  # channel id → its messages (replies too), oldest first
        self._uploads: dict[str, str] = {}  # file id → the filename files.getUploadURLExternal was given
        self.gates: dict[str, threading.Event] = {}  # see hold()
        self.channel_names: dict[str, str] = {}
        # Told of each call and the answer it gets, before the caller has that answer.
        self.listeners: list[Callable[[Call, dict], None]] = []
        self._changed = threading.Condition()
        self._ts = 0  # the last ts handed out, in microseconds: Slack's are its clock's, and unique per channel
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

    def fail(self, method: str, status: int = 429, times: int = 1, retry_after: int = 1, error: str = "ratelimited",
             applied: bool = False):
        """The next ``times`` calls of ``method`` get ``status`` (429 with Retry-After, or an error body).

        ``applied``: the call takes effect all the same (a message is posted) and only its answer is the error,
        as when Slack fails after it stored the message: the case a client cannot tell from a call that was lost."""
        headers = {"Retry-After": str(retry_after)} if status == 429 else {}
        planned = (status, headers, {"ok": False, "error": error}, applied)
        with self._changed:
            self.failures.setdefault(method, []).extend([planned] * times)

    def posted(self, channel: str | None = None) -> list[dict]:
        """Every message in ``channel`` (or in all channels), replies included, oldest first."""
        with self._changed:
            chosen = [channel] if channel else list(self.messages)
            return [dict(m) for c in chosen for m in self.messages.get(c, [])]

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
            failure = planned.pop(0) if planned else None
            if failure is not None and not failure[3]:
                return failure[:3]
            self._ts = max(self._ts + 1, time.time_ns() // 1000)
            ts = f"{self._ts // 1_000_000}.{self._ts % 1_000_000:06d}"
            status, extra, body = self._reply(method, params, ts)
            if failure is not None:  # applied, but answered with the error
                return failure[:3]
            return status, extra, body

    def _reply(self, method: str, params: dict, ts: str) -> tuple[int, dict, dict]:
        """Slack's answer to ``method``; called with the lock held, so a post and its reading back are atomic."""
        channel = params.get("channel") or params.get("channel_id") or "C1"
        ids = {name: cid for cid, name in self.channel_names.items()}
        ids.update({f"#{name}": cid for name, cid in ids.items()})
        if channel in ids:  # as Slack does: messages may be posted to a channel's name, updated only by its id
            if method in ("chat.update", "conversations.history", "conversations.replies"):
                return 200, {}, {"ok": False, "error": "channel_not_found"}
            channel = ids[channel]
        if method == "apps.connections.open":  # a fresh ticket per call, as Slack's URLs are single-use
            if self.socket is None:
                return 200, {}, {"ok": False, "error": "invalid_auth"}
            return 200, {}, {"ok": True, "url": f"{self.socket.url}?ticket={uuid.uuid4()}&app_id=A1"}
        stored = {
            "chat.postMessage": self._post_message,
            "chat.update": self._update_message,
            "files.completeUploadExternal": self._share_files,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
        }.get(method)
        if stored is not None:
            body = stored(channel, params, ts)
            return 200, {}, body
        if method == "files.getUploadURLExternal":
            self._uploads[f"F{ts}"] = params.get("filename", "file")
        replies = {
            "auth.test": {"user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1", "user": "meshbot",
                          "url": "https://example.slack.com/"},
            "chat.postEphemeral": {"message_ts": ts},
            "files.getUploadURLExternal": {"upload_url": f"{self.base}/upload/F{ts}", "file_id": f"F{ts}"},
            "conversations.info": {"channel": {"id": channel, "name": self.channel_names.get(channel, "general")}},
        }
        return 200, {}, {"ok": True, **replies.get(method, {})}

    # What Slack stores, and reads back. Messages carry the fields Slack's own have for a bot's message.

    def _new_message(self, channel: str, ts: str, thread_ts: str | None, **fields) -> dict:
        message = {"type": "message", "user": "UBOT", "bot_id": "BBOT", "app_id": "A1", "team": "T1", "ts": ts,
                   **fields}
        thread = self.messages.setdefault(channel, [])
        if thread_ts:
            root = next((m for m in thread if m["ts"] == thread_ts), None)
            if root is None:  # a person's message the stub was not shown (a mention's): it exists in Slack
                root = {"type": "message", "user": "U1", "text": "", "ts": thread_ts, "team": "T1"}
                thread.append(root)
                thread.sort(key=lambda m: float(m["ts"]))
            message.update(thread_ts=thread_ts, parent_user_id=root["user"])
            root.update(thread_ts=thread_ts, reply_count=root.get("reply_count", 0) + 1, latest_reply=ts,
                        reply_users=sorted(set(root.get("reply_users", [])) | {"UBOT"}))
        thread.append(message)
        return message

    def _post_message(self, channel: str, params: dict, ts: str) -> dict:
        fields = {"text": params.get("text") or ""}
        if params.get("blocks"):
            fields["blocks"] = _json_param(params["blocks"])
        metadata = _json_param(params.get("metadata"))
        if metadata:
            fields["metadata"] = {"event_type": metadata.get("event_type"),
                                  "event_payload": metadata.get("event_payload") or {}}
        message = self._new_message(channel, ts, params.get("thread_ts") or None, **fields)
        return {"ok": True, "channel": channel, "ts": ts, "message": _without_thread_counts(message)}

    def _update_message(self, channel: str, params: dict, ts: str) -> dict:
        message = next((m for m in self.messages.get(channel, []) if m["ts"] == params.get("ts")), None)
        if message is not None:  # one the stub never saw posted (a test's made-up ts) is answered ok all the same
            message["text"] = params.get("text") or ""
            if params.get("blocks"):
                message["blocks"] = _json_param(params["blocks"])
            message["edited"] = {"user": "UBOT", "ts": ts}
        return {"ok": True, "channel": channel, "ts": params.get("ts"), "text": params.get("text")}

    def _share_files(self, channel: str, params: dict, ts: str) -> dict:
        files = [{"id": f["id"], "name": self._uploads.get(f["id"], f.get("title") or "file"),
                  "title": f.get("title") or self._uploads.get(f["id"], "file")}
                 for f in _json_param(params.get("files")) or []]
        if params.get("channel_id") or params.get("channels"):
            self._new_message(channel, ts, params.get("thread_ts") or None, text=params.get("initial_comment") or "",
                              files=files, upload=True)
        return {"ok": True, "files": files}

    def _history(self, channel: str, params: dict, ts: str) -> dict:
        if channel not in self.messages and not re.fullmatch(r"[CGD][A-Z0-9]+", channel):
            return {"ok": False, "error": "channel_not_found"}
        top = [m for m in self.messages.get(channel, []) if m.get("thread_ts") in (None, m["ts"])]
        return _page(list(reversed(top)), params, default_limit=100, most=999, extra={"pin_count": 0})

    def _replies(self, channel: str, params: dict, ts: str) -> dict:
        messages = self.messages.get(channel, [])
        asked = next((m for m in messages if m["ts"] == params.get("ts")), None)
        if asked is None:
            return {"ok": False, "error": "thread_not_found"}
        root_ts = asked.get("thread_ts") or asked["ts"]
        root = next(m for m in messages if m["ts"] == root_ts)
        thread = [m for m in messages if m.get("thread_ts") == root_ts and m["ts"] != root_ts]
        return _page(thread, params, default_limit=1000, most=1000, first=root)


def _json_param(value):
    """A structured argument as Slack accepts it: a JSON body's object, or a form field's JSON text."""
    if isinstance(value, str):
        return json.loads(value) if value else None
    return value


def _true(value) -> bool:
    return value in (True, "true", "1", 1)


def _without_thread_counts(message: dict) -> dict:
    return {k: v for k, v in message.items() if k not in ("reply_count", "reply_users", "latest_reply")}


def _page(messages: list[dict], params: dict, default_limit: int, most: int, first: dict | None = None,
          extra: dict | None = None) -> dict:
    """One page of ``messages`` (in the order given), filtered by oldest/latest and paged by cursor, as Slack pages:
    ``has_more`` and ``response_metadata.next_cursor`` (empty on the last page). ``first`` (a thread's parent)
    heads every page, as conversations.replies returns it whatever the range."""
    inclusive = _true(params.get("inclusive"))
    oldest, latest = float(params.get("oldest") or 0), float(params.get("latest") or 0) or None

    def within(m):
        at = float(m["ts"])
        after = at >= oldest if inclusive else at > oldest
        before = latest is None or (at <= latest if inclusive else at < latest)
        return after and before

    chosen = [m for m in messages if within(m)]
    start = int(base64.b64decode(params["cursor"]).decode().split(":")[1]) if params.get("cursor") else 0
    limit = min(int(params.get("limit") or default_limit), most)
    page = chosen[start:start + limit]
    more = start + limit < len(chosen)
    shown = ([first] if first is not None else []) + page
    if not _true(params.get("include_all_metadata")):
        shown = [{k: v for k, v in m.items() if k != "metadata"} for m in shown]
    cursor = base64.b64encode(f"next_ts:{start + limit}".encode()).decode() if more else ""
    return {"ok": True, "messages": [dict(m) for m in shown], "has_more": more, **(extra or {}),
            "response_metadata": {"next_cursor": cursor}}


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
