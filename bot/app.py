"""Build the Bolt app (asyncio) and the Slack Web API clients: the worker's (blocking) and the web process's."""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

import handlers
from bot import metrics
from bot import queue as jobqueue
from bot.config import Config, ConfigurationError, Secrets
from bot.desk import Desk

SLACK_API_URL = "https://slack.com/api/"
RATE_LIMIT_RETRIES = 3


class _SameTokenWarning(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment by itself and warns that the client given wins over it.
    Both hold the same token, so the warning would only puzzle whoever reads the start-up log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


logging.getLogger("slack_bolt.AsyncApp").addFilter(_SameTokenWarning())


def _count_failure(api_method: str, exc: Exception) -> None:
    if isinstance(exc, SlackApiError):  # Slack answered ok: false, or a status slack_sdk gave up retrying
        metrics.SLACK_ERRORS.labels(api_method, str(exc.response.get("error") or exc.response.status_code)).inc()
    else:  # could not reach Slack at all, after the connection retries
        metrics.SLACK_ERRORS.labels(api_method, type(exc).__name__).inc()


class MeteredWebClient(WebClient):
    """A WebClient that counts failed calls: every Web API method goes through api_call."""

    def api_call(self, api_method: str, **kwargs):
        try:
            return super().api_call(api_method, **kwargs)
        except Exception as exc:
            _count_failure(api_method, exc)
            raise


class MeteredAsyncWebClient(AsyncWebClient):
    """The web process's AsyncWebClient, counting failed calls the same way."""

    async def api_call(self, api_method: str, **kwargs):
        try:
            return await super().api_call(api_method, **kwargs)
        except Exception as exc:
            _count_failure(api_method, exc)
            raise


def _counted(handler: type, reason: str) -> type:
    """slack_sdk's retry ``handler`` (blocking or async), counting each retry it makes."""

    class Counted(handler):
        def prepare_for_next_attempt(self, **kwargs) -> None:
            metrics.SLACK_RETRIES.labels(reason).inc()
            super().prepare_for_next_attempt(**kwargs)

        async def prepare_for_next_attempt_async(self, **kwargs) -> None:
            metrics.SLACK_RETRIES.labels(reason).inc()
            await super().prepare_for_next_attempt_async(**kwargs)

    return Counted


def _token_and_url(secrets: Secrets) -> tuple[str, str]:
    if secrets.slack_bot_token is None:
        raise ConfigurationError("SLACK_BOT_TOKEN is not set")
    return secrets.slack_bot_token.get_secret_value(), (secrets.slack_api_url or SLACK_API_URL).rstrip("/") + "/"


def web_client(secrets: Secrets) -> WebClient:
    """The worker's client; 429s wait for Retry-After (off by default in slack_sdk)."""
    token, base_url = _token_and_url(secrets)
    return MeteredWebClient(token=token, base_url=base_url, retry_handlers=[
        _counted(ConnectionErrorRetryHandler, "connection")(),
        _counted(RateLimitErrorRetryHandler, "ratelimited")(max_retry_count=RATE_LIMIT_RETRIES)])


def async_web_client(secrets: Secrets) -> AsyncWebClient:
    """The web process's client, with the same retries. No shared aiohttp session: Bolt deep-copies a lazy
    listener's context, client included, and a session cannot be copied."""
    token, base_url = _token_and_url(secrets)
    return MeteredAsyncWebClient(token=token, base_url=base_url, retry_handlers=[
        _counted(AsyncConnectionErrorRetryHandler, "connection")(),
        _counted(AsyncRateLimitErrorRetryHandler, "ratelimited")(max_retry_count=RATE_LIMIT_RETRIES)])


async def build_app(config: Config, secrets: Secrets, redis=None, socket_mode: bool = False) -> AsyncApp:
    """The app; ``socket_mode`` apps take no HTTP requests, so they need no signing secret (deploy/ omits it).

    The token is checked with auth.test now, so a wrong one fails at start-up rather than at the first
    command, and that answer then authorizes every request (Bolt would otherwise call auth.test again
    inside the first ack)."""
    if secrets.slack_signing_secret is None and not socket_mode:
        raise ConfigurationError("SLACK_SIGNING_SECRET is not set")
    signing_secret = secrets.slack_signing_secret.get_secret_value() if secrets.slack_signing_secret else None
    client = async_web_client(secrets)
    try:
        identity = AuthorizeResult.from_auth_test_response(auth_test_response=await client.auth_test(),
                                                           bot_token=client.token)
    except SlackApiError as exc:
        raise ConfigurationError(f"Slack refused SLACK_BOT_TOKEN ({exc.response.get('error')})") from None

    async def authorize() -> AuthorizeResult:
        return identity

    client.token = None  # given `authorize`, Bolt takes the token from its answer (and warns about any other)
    # process_before_response: the slash command's ack is computed in the request's own task, so the
    # answer does not wait on Bolt's 10 ms polling for the listener; handlers/ calls Slack lazily.
    app = AsyncApp(client=client, authorize=authorize, signing_secret=signing_secret,
                   request_verification_enabled=signing_secret is not None, process_before_response=True)
    redis = redis if redis is not None else jobqueue.connect(secrets.redis_url)

    @app.middleware
    async def metered_client(context, next):
        # Bolt gives each request a plain AsyncWebClient made from the app's; make it a counting one.
        plain = context.client
        context["client"] = MeteredAsyncWebClient(
            token=plain.token, base_url=plain.base_url, timeout=plain.timeout, ssl=plain.ssl, proxy=plain.proxy,
            headers=plain.headers, team_id=context.team_id, logger=plain.logger,
            retry_handlers=plain.retry_handlers)
        context.pop("say", None)  # Bolt made say() with the plain client while calling this; it is made again on use
        await next()

    handlers.register_all(app, Desk(config, jobqueue.queue(redis)))
    return app
