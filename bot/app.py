"""Build the Bolt app: one client, one desk, the handlers."""

from __future__ import annotations

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

import handlers
from bot import metrics
from bot import queue as jobqueue
from bot.config import Config, ConfigurationError, Secrets
from bot.desk import Desk

SLACK_API_URL = "https://slack.com/api/"


class MeteredWebClient(WebClient):
    """A WebClient that counts failed calls: every Web API method goes through api_call."""

    def api_call(self, api_method: str, **kwargs):
        try:
            return super().api_call(api_method, **kwargs)
        except SlackApiError as exc:  # Slack answered ok: false, or a status slack_sdk gave up retrying
            metrics.SLACK_ERRORS.labels(api_method, str(exc.response.get("error") or exc.response.status_code)).inc()
            raise
        except Exception as exc:  # could not reach Slack at all, after the connection retries
            metrics.SLACK_ERRORS.labels(api_method, type(exc).__name__).inc()
            raise


class _CountedRateLimitRetries(RateLimitErrorRetryHandler):
    def prepare_for_next_attempt(self, **kwargs) -> None:
        metrics.SLACK_RETRIES.labels("ratelimited").inc()
        super().prepare_for_next_attempt(**kwargs)


class _CountedConnectionRetries(ConnectionErrorRetryHandler):
    def prepare_for_next_attempt(self, **kwargs) -> None:
        metrics.SLACK_RETRIES.labels("connection").inc()
        super().prepare_for_next_attempt(**kwargs)


def web_client(secrets: Secrets) -> WebClient:
    """The Web API client both processes use; 429s wait for Retry-After (off by default in slack_sdk)."""
    if secrets.slack_bot_token is None:
        raise ConfigurationError("SLACK_BOT_TOKEN is not set")
    base_url = (secrets.slack_api_url or SLACK_API_URL).rstrip("/") + "/"
    return MeteredWebClient(token=secrets.slack_bot_token.get_secret_value(), base_url=base_url,
                            retry_handlers=[_CountedConnectionRetries(), _CountedRateLimitRetries(max_retry_count=3)])


def build_app(config: Config, secrets: Secrets, client: WebClient | None = None, redis=None,
              socket_mode: bool = False) -> App:
    """The app; ``socket_mode`` apps take no HTTP requests, so they need no signing secret (deploy/ omits it)."""
    if secrets.slack_signing_secret is None and not socket_mode:
        raise ConfigurationError("SLACK_SIGNING_SECRET is not set")
    signing_secret = secrets.slack_signing_secret.get_secret_value() if secrets.slack_signing_secret else None
    # App() calls auth.test now: a wrong token fails at start-up, not at the first command.
    # process_before_response: the slash command's ack is computed in the request's own thread, so the
    # answer does not wait on Bolt's 10 ms polling for a listener thread; handlers/ runs Slack calls lazily.
    app = App(client=client or web_client(secrets), signing_secret=signing_secret,
              request_verification_enabled=signing_secret is not None, process_before_response=True)
    redis = redis if redis is not None else jobqueue.connect(secrets.redis_url)

    @app.middleware
    def metered_client(context, next):
        # Bolt gives each request a plain WebClient made from the app's; make it a counting one (same settings).
        plain = context.client
        context["client"] = MeteredWebClient(
            token=plain.token, base_url=plain.base_url, timeout=plain.timeout, ssl=plain.ssl, proxy=plain.proxy,
            headers=plain.headers, team_id=context.team_id, logger=plain.logger, retry_handlers=plain.retry_handlers)
        context.pop("say", None)  # Bolt made say() with the plain client while calling this; it is made again on use
        next()

    handlers.register_all(app, Desk(config, jobqueue.queue(redis)))
    return app
