"""JSON log lines never carry a secret, whatever characters it has and wherever it appears."""

import io
import json
import logging

from bot import logs

SECRET = 'pa"ss\\wörd-42'  # json.dumps escapes each of ", \ and ö
REDIS_URL = "redis://:pa%22ss%5Cw%C3%B6rd-42@redis.example:6379/0"  # the same password, percent-encoded
TOKEN = "xoxb-1234-5678-abcdefgh"


def formatted(record_with, env) -> list[dict]:
    """Log through the real formatter, as logs.configure sets it up, and read the lines back."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter(logs.secrets_from_env(env)))
    logger = logging.getLogger("meshbot.test-logs")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        record_with(logger)
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def strings(value):
    if isinstance(value, dict | list):
        for v in value.values() if isinstance(value, dict) else value:
            yield from strings(v)
    elif isinstance(value, str):
        yield value


def test_secrets_with_quotes_backslashes_and_non_ascii_are_redacted_in_messages_fields_and_exceptions():
    def log(logger):
        logger.warning("connecting with %s", SECRET)
        logger.info("audit", extra={"fields": {"what": f"token {SECRET}", "nested": [{"url": REDIS_URL}]}})
        try:
            raise RuntimeError(f"Slack said no to {TOKEN} and {SECRET}")
        except RuntimeError:
            logger.exception("failed")

    lines = formatted(log, {"SLACK_SIGNING_SECRET": "signing-secret-value", "REDIS_URL": REDIS_URL})
    text = "\n".join(strings(lines))  # decoded: json.dumps would hide the secret from `in` by escaping it
    assert SECRET not in text and TOKEN not in text and "pa%22ss" not in text
    assert lines[0]["msg"] == "connecting with [redacted]"
    assert lines[1]["what"] == "token [redacted]"
    assert lines[1]["nested"] == [{"url": "redis://:[redacted]@redis.example:6379/0"}]
    assert "RuntimeError: Slack said no to [redacted] and [redacted]" in lines[2]["exc"]


def test_the_redis_password_is_known_as_written_and_decoded():
    assert logs.secrets_from_env({"REDIS_URL": REDIS_URL}) == ["pa%22ss%5Cw%C3%B6rd-42", SECRET]
