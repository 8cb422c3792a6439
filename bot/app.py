"""Build the Bolt app: one client, one desk, the handlers."""

from __future__ import annotations

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

import handlers
from bot import queue as jobqueue
from bot.config import Config, ConfigurationError, Secrets
from bot.desk import Desk

SLACK_API_URL = "https://slack.com/api/"


def web_client(secrets: Secrets) -> WebClient:
    """The Web API client both processes use; 429s wait for Retry-After (off by default in slack_sdk)."""
    if secrets.slack_bot_token is None:
        raise ConfigurationError("SLACK_BOT_TOKEN is not set")
    base_url = (secrets.slack_api_url or SLACK_API_URL).rstrip("/") + "/"
    return WebClient(token=secrets.slack_bot_token.get_secret_value(), base_url=base_url,
                     retry_handlers=[ConnectionErrorRetryHandler(), RateLimitErrorRetryHandler(max_retry_count=3)])


def build_app(config: Config, secrets: Secrets, client: WebClient | None = None, redis=None) -> App:
    if secrets.slack_signing_secret is None:
        raise ConfigurationError("SLACK_SIGNING_SECRET is not set")
    # App() calls auth.test now: a wrong token fails at start-up, not at the first command.
    # Bolt's default listener pool (5 threads) is kept: 32 measured slower under a burst (GIL contention).
    app = App(client=client or web_client(secrets), signing_secret=secrets.slack_signing_secret.get_secret_value())
    redis = redis if redis is not None else jobqueue.connect(secrets.redis_url)
    handlers.register_all(app, Desk(config, jobqueue.queue(redis)))
    return app
