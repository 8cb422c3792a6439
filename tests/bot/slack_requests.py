"""Requests as Slack sends them (built and signed by bot.slackstub, shared with the demo), and a Sender."""

from __future__ import annotations

import httpx

from bot.slackstub import click, command, event, mention, sign

__all__ = ["Sender", "click", "command", "event", "mention", "sign"]


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
