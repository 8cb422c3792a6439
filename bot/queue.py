"""The job queue: RQ on Redis, JSON payloads, one job function for every kind of work.

Every job is ``bot.jobs.run(payload)`` where ``payload["kind"]`` says what to do
("check", "ask"; the digest issue adds "digest"), so one worker and one
execution path serve commands, mentions, buttons and the scheduler alike.
"""

from __future__ import annotations

import hashlib
import time

import redis
from rq import Callback, Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.serializers import JSONSerializer

QUEUE_NAME = "meshbot"
JOB_FUNCTION = "bot.jobs.run"  # by name: the web process never imports the checks
ON_FAILURE = "bot.jobs.failed"  # tells Slack when a job failed for good
JOB_TIMEOUT = 120  # seconds of work; a check run's own budget is 20 s by default
RETRIES = 2  # a job whose worker died is run again (RQ counts that as a retry); Slack outages are retried
# inside the job instead (bot.slackretry), so these are not spent in a second by a Slack that is down
KEEP_SECONDS = 24 * 3600  # a finished job's id blocks duplicates this long; Slack retries within minutes


REGISTER_EVERY = 60.0  # seconds; RQ's set of queues (read by `rq info`) may be lost with a Redis restart
_registered: dict[tuple[int, str], float] = {}  # (Redis pool, queue) → when this process last listed it


class QueueDown(Exception):
    """Redis did not answer; nothing was enqueued."""


class QueueResting(QueueDown):
    """Redis was not even tried: it failed a moment ago (see Breaker)."""


class Breaker:
    """Once Redis could not be reached, refuse at once for ``rest`` seconds instead of trying again.

    The web process calls Redis on its event loop (a fast local round trip), so a Redis that hangs
    would hold every other ack for the client timeout, one request after another. Used as
    ``with breaker:`` around Redis calls; any Redis error inside comes out as QueueDown, and only
    a connection failure or a timeout starts a rest (an error Redis answered with is not an outage).
    """

    def __init__(self, rest: float = 5.0, clock=time.monotonic):
        self.rest, self.clock = rest, clock
        self.resting_until = 0.0

    def __enter__(self) -> None:
        if self.clock() < self.resting_until:
            raise QueueResting(f"not trying Redis again yet: it failed less than {self.rest:g} s ago")

    def __exit__(self, kind, exc, traceback) -> bool:
        if isinstance(exc, QueueResting):  # an inner refusal: the rest it reports is already running
            return False
        cause = exc.__cause__ if isinstance(exc, QueueDown) else exc
        if isinstance(cause, (redis.ConnectionError, redis.TimeoutError)):
            self.resting_until = self.clock() + self.rest
        if isinstance(exc, redis.RedisError):
            raise QueueDown(str(exc)) from exc
        return False


def connect(url: str, timeout: float = 1.0) -> redis.Redis:
    # Short timeouts: the web process must ack within 3 s even when Redis hangs.
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)


def queue(connection: redis.Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=connection, serializer=JSONSerializer)


def job_timeout() -> int:
    """The work's time plus Slack's retry budget (bot.slackretry): a job waiting out an outage is not killed."""
    from bot.slackretry import budget_seconds

    return int(JOB_TIMEOUT + budget_seconds())


def job_id_for(key: str) -> str:
    """A stable job id per Slack request, so everything posted for it can be keyed by it."""
    return "mesh-" + hashlib.sha256(key.encode()).hexdigest()[:20]


def submit(q: Queue, payload: dict, key: str) -> tuple[str, bool]:
    """Enqueue ``payload`` once per ``key`` (a trigger_id or event_id); returns (job id, new?).

    Slack re-sends a request it thinks was lost (``X-Slack-Retry-Num``). The job
    id derives from the key and RQ's ``unique`` enqueue (one atomic script) refuses
    a second job with that id, so the re-delivery finds the first job instead.
    """
    job_id = job_id_for(key)
    # With unique=True RQ saves and pushes the job in its script at once; the pipeline only collects the
    # queue's entry in RQ's set of queues, which needs writing once per process: one round trip, not two,
    # in the path Slack is waiting on.
    registration = q.connection.pipeline(transaction=False)
    try:
        q.enqueue(JOB_FUNCTION, payload, job_id=job_id, unique=True, job_timeout=job_timeout(),
                  retry=Retry(max=RETRIES), on_failure=Callback(ON_FAILURE), result_ttl=KEEP_SECONDS,
                  failure_ttl=KEEP_SECONDS, pipeline=registration)
        where = (id(q.connection.connection_pool), q.key)  # cheap: this runs on every command
        if time.monotonic() - _registered.get(where, -REGISTER_EVERY) >= REGISTER_EVERY:
            registration.execute()
            _registered[where] = time.monotonic()
    except DuplicateJobError:
        return job_id, False
    except redis.RedisError as exc:
        raise QueueDown(str(exc)) from exc
    finally:
        registration.reset()
    return job_id, True
