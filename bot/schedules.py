"""Digest schedules: those in the config file and those made in Slack (kept in Redis), one shape for both.

Light on purpose: the web process uses it to validate and store `/mesh digest subscribe`,
the scheduler to know what to fire. Neither imports the checks through it.

Cron lines are read as crontab reads them. APScheduler 3's ``CronTrigger.from_crontab``
numbers weekdays from Monday (0 = Monday; its docs call it a historical mistake,
fixed in 4.x), so numeric weekdays are turned into names first: ``1-5`` is
Monday to Friday, ``0`` and ``7`` are Sunday.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

SUBSCRIPTIONS = "meshbot:digest:subscriptions"  # hash: id → JSON Schedule
NEXT_ID = "meshbot:digest:next-id"
REQUEST_KEEP = 24 * 3600  # a subscribe request's claim; Slack re-delivers within minutes
FIELDS = ("minute", "hour", "day", "month", "day_of_week")
FIELD_NAMES = {"minute": "minute", "hour": "hour", "day": "day of month", "month": "month",
               "day_of_week": "day of week"}
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MIN_INTERVAL = timedelta(hours=1)  # subscriptions made in Slack: no more often than this (no spam)
EXAMPLE = '`/mesh digest subscribe "0 9 * * 1-5" prod` (09:00 UTC, Monday to Friday)'


class BadCron(ValueError):
    """A cron line or time zone that cannot be used; the message says which part and why."""


def trigger(cron: str, timezone: str = "UTC") -> CronTrigger:
    values = cron.split()
    if len(values) != 5:
        raise BadCron(f"`{cron}` has {len(values)} fields; a cron line has 5: minute hour day-of-month month "
                      "day-of-week")
    try:
        values[4] = _weekdays(values[4])
    except ValueError as exc:
        raise BadCron(f"the day of week field `{cron.split()[4]}` is not valid: {exc}") from None
    for name, value in zip(FIELDS, values, strict=True):
        try:
            CronTrigger(**{name: value}, timezone="UTC")
        except ValueError as exc:
            raise BadCron(f"the {FIELD_NAMES[name]} field `{cron.split()[FIELDS.index(name)]}` is not valid: "
                          f"{exc}") from None
    try:
        built = CronTrigger(**dict(zip(FIELDS, values, strict=True)), timezone=timezone)
    except ZoneInfoNotFoundError:
        raise BadCron(f"unknown time zone `{timezone}` (use an IANA name such as Europe/Paris)") from None
    except ValueError as exc:
        raise BadCron(f"`{cron}` is not valid: {exc}") from None
    if built.get_next_fire_time(None, datetime.now(built.timezone)) is None:  # e.g. 31 February
        raise BadCron(f"`{cron}` never fires")
    return built


def _weekdays(field: str) -> str:
    """Numeric crontab weekdays (0/7 = Sunday) as names, which APScheduler reads the same way cron does."""
    if field == "*":
        return field
    names: list[str] = []
    for item in field.split(","):
        m = re.fullmatch(r"(\*|\d+)(?:-(\d+))?(?:/(\d+))?", item)
        if not m:
            names.append(item)  # names (mon-fri) and anything else: APScheduler judges them
            continue
        start, end, step = m.groups()
        low, high = (0, 6) if start == "*" else (int(start), int(end) if end else (6 if step else int(start)))
        if high > 7 or low > high:
            raise ValueError(f"`{item}`: weekdays go from 0 (Sunday) to 7 (Sunday again)")
        names += [DAYS[d % 7] for d in range(low, high + 1, int(step or 1))]
    return ",".join(dict.fromkeys(names))


def fire_times(cron: str, timezone: str, after: datetime, count: int) -> list[datetime]:
    return _fire_times(trigger(cron, timezone), after, count)


def _fire_times(t: CronTrigger, after: datetime, count: int) -> list[datetime]:
    times, previous = [], None
    now = after
    for _ in range(count):
        previous = t.get_next_fire_time(previous, now)
        if previous is None:
            break
        times.append(previous)
        now = previous + timedelta(seconds=1)
    return times


@dataclass(frozen=True)
class Schedule:
    id: str
    channel: str
    cron: str
    timezone: str = "UTC"
    clusters: tuple[str, ...] = ()  # empty: every configured cluster
    checks: tuple[str, ...] = ("all",)
    quiet: bool = False
    by: str | None = None  # the Slack user who subscribed; None: the config file
    by_name: str = ""
    channel_name: str = ""

    def to_json(self) -> dict:
        return {**asdict(self), "clusters": list(self.clusters), "checks": list(self.checks)}

    @classmethod
    def from_json(cls, data: dict) -> Schedule:
        return cls(**{**data, "clusters": tuple(data.get("clusters", ())), "checks": tuple(data.get("checks", ()))})

    def trigger(self) -> CronTrigger:
        return trigger(self.cron, self.timezone)

    def next_fire(self, after: datetime) -> datetime | None:
        return self.trigger().get_next_fire_time(None, after)

    def posts_in(self, channel: str, channel_name: str = "") -> bool:
        return self.channel in {channel, channel_name, f"#{channel_name}"} - {"", "#"}


def from_config(config) -> list[Schedule]:
    out = []
    for d in config.digests:
        spec = json.dumps([d.channel, d.cron, d.timezone, d.clusters, d.checks, d.quiet])
        sid = d.id or "cfg-" + hashlib.sha256(spec.encode()).hexdigest()[:8]
        out.append(Schedule(sid, d.channel, d.cron, d.timezone, tuple(d.clusters), tuple(d.checks), d.quiet))
    return out


class Subscriptions:
    """Schedules made with `/mesh digest subscribe`, in Redis: they survive restarts of every process."""

    def __init__(self, redis):
        self.redis = redis

    def add(self, channel: str, cron: str, clusters: tuple[str, ...], by: str, by_name: str = "",
            channel_name: str = "", timezone: str = "UTC", request: str | None = None) -> Schedule:
        """Store a new subscription; a Slack re-delivery of the same ``request`` gets the first one back.

        The request's claim (its schedule's id) and the schedule are written in one transaction, so a
        re-delivery never finds a claim whose schedule is not stored yet.
        """
        sid = f"s{self.redis.incr(NEXT_ID)}"
        schedule = Schedule(sid, channel, cron, timezone, clusters, ("all",), False, by, by_name, channel_name)
        if not request:
            self.redis.hset(SUBSCRIPTIONS, sid, json.dumps(schedule.to_json()))
            return schedule
        claim = f"meshbot:digest:request:{request}"

        def claim_or_find(p) -> Schedule:
            first = p.get(claim)  # None: a new request, or its claim expired
            stored = p.hget(SUBSCRIPTIONS, first.decode()) if first else None
            if stored:
                return Schedule.from_json(json.loads(stored))
            p.multi()
            p.set(claim, sid, ex=REQUEST_KEEP)
            p.hset(SUBSCRIPTIONS, sid, json.dumps(schedule.to_json()))
            return schedule

        return self.redis.transaction(claim_or_find, claim, value_from_callable=True)

    def get(self, sid: str) -> Schedule | None:
        raw = self.redis.hget(SUBSCRIPTIONS, sid)
        return Schedule.from_json(json.loads(raw)) if raw else None

    def remove(self, sid: str) -> bool:
        return bool(self.redis.hdel(SUBSCRIPTIONS, sid))

    def all(self) -> list[Schedule]:
        found = [Schedule.from_json(json.loads(v)) for v in self.redis.hvals(SUBSCRIPTIONS)]
        return sorted(found, key=lambda s: int(s.id[1:]) if s.id[1:].isdigit() else 0)


def all_schedules(config, redis) -> list[Schedule]:
    return from_config(config) + Subscriptions(redis).all()


def too_often(t: CronTrigger) -> timedelta | None:
    """The shortest gap between ``t``'s next firings, when it is under MIN_INTERVAL."""
    times = _fire_times(t, datetime.now(UTC), 25)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    shortest = min(gaps, default=None)
    return shortest if shortest is not None and shortest < MIN_INTERVAL else None


def digest_payload(schedule: Schedule, at: str, origin=None) -> dict:
    """The digest job for one firing (``at``: its fire time, ISO 8601) or for `/mesh digest now` (origin given)."""
    from handlers.grammar import Origin

    origin = origin or Origin("schedule", schedule.by or "", schedule.channel, schedule.by_name,
                              schedule.channel_name)
    return {"kind": "digest", "schedule": schedule.id, "channel": schedule.channel,
            "clusters": list(schedule.clusters), "checks": list(schedule.checks), "quiet": schedule.quiet,
            "at": at, "origin": origin.to_json()}
