"""Slack, stood in for on this machine: its Web API, and requests signed as Slack signs them.

``SlackStub`` serves the Web API methods meshbot calls (and response_url, and file
uploads) on loopback, records every call, tells listeners about it, and answers
errors and rate limits on demand. The ``command``/``click``/``event`` builders make
request bodies exactly as Slack sends them, and ``sign`` signs them (v0 HMAC-SHA256).
`meshbot demo` and the tests both use it; nothing here is used in production.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import threading
import time
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
        self.channel_names: dict[str, str] = {}
        # Told of each call and the answer it gets, before the caller has that answer.
        self.listeners: list[Callable[[Call, dict], None]] = []
        self._changed = threading.Condition()
        self._ts = 1_700_000_000
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True
        self.base = f"http://{host}:{self.server.server_port}"
        self.api_url = self.base + "/api/"
        self.response_url = self.base + "/response"

    def start(self) -> SlackStub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail(self, method: str, status: int = 429, times: int = 1, retry_after: int = 1, error: str = "ratelimited"):
        """The next ``times`` calls of ``method`` get ``status`` (429 with Retry-After, or an error body)."""
        headers = {"Retry-After": str(retry_after)} if status == 429 else {}
        self.failures.setdefault(method, []).extend([(status, headers, {"ok": False, "error": error})] * times)

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

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            text = raw.decode("utf-8", "replace")
            headers = dict(self.headers.items())
            if self.path.startswith("/api/"):
                method = self.path[len("/api/"):].split("?")[0]
                if "json" in headers.get("Content-Type", ""):
                    params = json.loads(text or "{}")
                else:
                    params = dict(parse_qsl(text))
                call = Call(method, params, headers, text)
                stub._record(call)
                status, extra, body = stub._answer(method, params)
                self._tell(call, body)
                self._send(status, extra, json.dumps(body).encode(), "application/json")
            else:
                kind = "upload" if self.path.startswith("/upload/") else "response_url"
                params = json.loads(text) if kind == "response_url" and text else {"bytes": len(raw)}
                call = Call(kind, params, headers, text)
                stub._record(call)
                self._tell(call, {"ok": True})
                self._send(200, {}, b"OK", "text/plain")

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
