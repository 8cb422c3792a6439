"""Digest tests use a Redis DB of their own (13), flushed around every test, so other bot tests never share it."""

import pytest
import redis as redis_lib

DIGEST_REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture
def redis():
    connection = redis_lib.Redis.from_url(DIGEST_REDIS_URL)
    connection.flushdb()
    yield connection
    connection.flushdb()


@pytest.fixture
def env(env):
    return {**env, "REDIS_URL": DIGEST_REDIS_URL}
