"""Requests as Slack sends them: form-encoded commands and clicks, JSON events, signed with v0 HMAC-SHA256."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from urllib.parse import urlencode

import httpx

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
          trigger_id: str | None = None) -> str:
    payload = {
        "type": "block_actions", "team": {"id": "T1", "domain": "example"},
        "user": {"id": user, "username": "alice", "team_id": "T1"}, "api_app_id": "A1",
        "token": "legacy-verification-token", "container": {"type": "message", "message_ts": "1.000001"},
        "trigger_id": trigger_id or f"trig.{next(_ids)}", "channel": {"id": channel, "name": "ops"},
        "message": {"ts": "1.000001", "text": "x"}, "response_url": response_url,
        "actions": [{"type": "button", "action_id": action_id, "block_id": "b1", "value": value,
                     "text": {"type": "plain_text", "text": "Re-run"}, "action_ts": "1.2"}],
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


class Sender:
    """Posts to a running app's /slack/events, signed with ``secret`` unless told otherwise."""

    def __init__(self, url: str, secret: str):
        self.url, self.secret = url, secret
        self.http = httpx.Client(timeout=10)

    def post(self, body: str, *, json_body: bool = False, signed: bool = True, timestamp: int | None = None,
             headers: dict | None = None) -> httpx.Response:
        h = {"Content-Type": "application/json" if json_body else "application/x-www-form-urlencoded"}
        if signed:
            h.update(sign(self.secret, body, timestamp))
        h.update(headers or {})
        return self.http.post(self.url, content=body.encode(), headers=h)
