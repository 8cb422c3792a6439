"""A local stand-in for the Slack Web API: records every call, answers as Slack does, fails on demand."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl


@dataclass
class Call:
    method: str  # Web API method, or "upload" (files.uploadV2's file POST), or "response_url"
    params: dict
    headers: dict
    raw: str = field(repr=False, default="")


class SlackStub:
    def __init__(self):
        self.calls: list[Call] = []
        self.failures: dict[str, list[tuple[int, dict, dict]]] = {}
        self.channel_names: dict[str, str] = {}
        self._changed = threading.Condition()
        self._ts = 1_700_000_000
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_port}"
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
                stub._record(Call(method, params, headers, text))
                status, extra, body = stub._answer(method, params)
                self._send(status, extra, json.dumps(body).encode(), "application/json")
            else:
                kind = "upload" if self.path.startswith("/upload/") else "response_url"
                params = json.loads(text) if kind == "response_url" and text else {"bytes": len(raw)}
                stub._record(Call(kind, params, headers, text))
                self._send(200, {}, b"OK", "text/plain")

        def _send(self, status, extra, body, content_type):
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
