"""Retrying Slack through an outage: 429, 5xx, connection errors and timeouts, with back-off, for a bounded time.

One budget per job (``budget()``, MESHBOT_SLACK_RETRY_SECONDS, default 240 s) covers every Slack call the job
makes: waits grow exponentially with full jitter (slack_sdk's BackoffRetryIntervalCalculator), capped at
MAX_WAIT, and stop at the budget's deadline; a 429 waits what Retry-After says, as before. The job's timeout
(bot.queue) leaves room for the whole budget, so a job stuck on Slack ends at its deadline, not by being killed.

What may be retried blindly depends on the call. Reading and updating are idempotent, so ``OutageRetryHandler``
retries them in slack_sdk's own loop. A post is not: a 5xx, a timeout or a reset connection may come after
Slack stored the message. For chat.postMessage and files.completeUploadExternal the handler retries only what
surely did not reach Slack (a 429, a refused connection); the rest comes out as the error, and bot.thread,
which tagged the post, looks for it in the channel before it posts again.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import random
import time
from http.client import HTTPException
from urllib.error import URLError

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.jitter import RandomJitter

from bot import metrics

DEFAULT_BUDGET = 240.0  # seconds: Slack's incidents mostly last minutes
MAX_WAIT = 30.0  # longest single wait between attempts
NOT_IDEMPOTENT = frozenset({"chat.postMessage", "files.completeUploadExternal"})

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("meshbot_slack_deadline", default=None)


class FullJitter(RandomJitter):
    """A wait drawn from [0, interval], capped: the AWS "full jitter" back-off, so retries of many jobs spread."""

    def recalculate(self, duration: float) -> float:
        return random.uniform(0, min(duration, MAX_WAIT))


BACKOFF = BackoffRetryIntervalCalculator(backoff_factor=0.5, jitter=FullJitter())


def budget_seconds() -> float:
    return float(os.environ.get("MESHBOT_SLACK_RETRY_SECONDS") or DEFAULT_BUDGET)


@contextlib.contextmanager
def budget(seconds: float | None = None):
    """Every Slack call inside shares one deadline, ``seconds`` (default: budget_seconds()) from now."""
    token = _deadline.set(time.monotonic() + (budget_seconds() if seconds is None else seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


def deadline() -> float:
    """The current budget's deadline; outside one, a fresh budget from now."""
    current = _deadline.get()
    return current if current is not None else time.monotonic() + budget_seconds()


def wait(attempt: int, until: float) -> bool:
    """Sleep the back-off for retry number ``attempt`` (0-based), never past ``until``; False if no time is left."""
    left = until - time.monotonic()
    if left <= 0:
        return False
    time.sleep(min(BACKOFF.calculate_sleep_duration(attempt), left))
    return True


def is_transient(exc: BaseException) -> bool:
    """Whether a later attempt may succeed: Slack's 5xx and 429, and failures to reach it or hear back."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200)
        return status >= 500 or status == 429
    return isinstance(exc, (URLError, HTTPException, ConnectionError, TimeoutError))


def cause(exc: BaseException) -> str:
    """A short, secret-free name for why a call failed: Slack's error code and status, or the exception's type."""
    if isinstance(exc, SlackApiError):
        response = exc.response
        return f"{response.get('error') or 'http'} ({getattr(response, 'status_code', '?')})"
    reason = getattr(exc, "reason", None)
    return type(reason if isinstance(reason, BaseException) else exc).__name__


def _refused(error: BaseException | None) -> bool:
    reason = getattr(error, "reason", error)
    return isinstance(reason, ConnectionRefusedError)


class OutageRetryHandler(RetryHandler):
    """slack_sdk's retry hook for the worker's client: retries until the budget's deadline, not a count."""

    def __init__(self):
        super().__init__(max_retry_count=1_000_000, interval_calculator=BACKOFF)
        self._rate_limit = RateLimitErrorRetryHandler()

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        if state.custom_values is None:
            state.custom_values = {"until": deadline()}
        if time.monotonic() >= state.custom_values["until"]:
            return False
        status = response.status_code if response is not None else None
        if status == 429 or _refused(error):  # Slack did not take the call: safe for any method
            return True
        method = request.url.rstrip("/").rsplit("/", 1)[-1]
        if method in NOT_IDEMPOTENT:
            return False
        if status is not None:
            return status >= 500
        return isinstance(error, (URLError, HTTPException, ConnectionError, TimeoutError))

    def prepare_for_next_attempt(self, *, state, request, response=None, error=None) -> None:
        if response is not None and response.status_code == 429:
            metrics.SLACK_RETRIES.labels("ratelimited").inc()
            self._rate_limit.prepare_for_next_attempt(state=state, request=request, response=response, error=error)
            return
        metrics.SLACK_RETRIES.labels("server_error" if response is not None else "connection").inc()
        state.next_attempt_requested = True
        wait(state.current_attempt, state.custom_values["until"])
        state.increment_current_attempt()


def outlasting(client):
    """``client`` (a WebClient) with OutageRetryHandler as its only retry handler."""
    client.retry_handlers = [OutageRetryHandler()]
    return client
