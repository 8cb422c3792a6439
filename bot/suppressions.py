"""Suppressions made from Slack, per cluster in Redis, and the cluster's config ones: what a run applies.

One hash per cluster, ``meshbot:suppressions:<cluster>``, one field per ``CODE|Kind ns/name`` holding who, why,
when and until when (JSON). Each has an end: an expired one is dropped the first time it is read, and that drop
is written to the audit log once (HDEL tells which reader removed it). Adding and lifting are audited by the
desk, where the person who did it is known. checks.suppression applies them to a report.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict

from bot import audit
from checks.suppression import Suppression
from handlers.grammar import Origin

log = logging.getLogger("meshbot.suppressions")
EXPIRY = Origin("expiry", "meshbot", "")  # the audit line of an expired suppression: nobody lifted it


def _key(cluster: str) -> str:
    return f"meshbot:suppressions:{cluster}"


class Suppressions:
    def __init__(self, redis):
        self.redis = redis

    def add(self, cluster: str, s: Suppression) -> None:
        self.redis.hset(_key(cluster), s.key, json.dumps(asdict(s)))

    def remove(self, cluster: str, code: str, obj: str) -> Suppression | None:
        raw = self.redis.hget(_key(cluster), f"{code}|{obj}")
        if raw is None or not self.redis.hdel(_key(cluster), f"{code}|{obj}"):
            return None
        return Suppression(**json.loads(raw))

    def active(self, cluster: str, now: float | None = None) -> list[Suppression]:
        """The cluster's live suppressions; expired ones are removed (and audited) on the way."""
        now = time.time() if now is None else now
        out = []
        for field, raw in sorted(self.redis.hgetall(_key(cluster)).items()):
            try:
                s = Suppression(**json.loads(raw))
            except (ValueError, TypeError):
                log.warning("dropping an unreadable suppression %s on %s", field, cluster)
                self.redis.hdel(_key(cluster), field)
                continue
            if s.active(now):
                out.append(s)
            elif self.redis.hdel(_key(cluster), field):
                audit.record(EXPIRY, f"suppression {s.code} {s.object}", "expired", cluster=cluster, by=s.by,
                             until=s.until)
        return out


def for_cluster(cluster_config, cluster: str, redis=None, now: float | None = None) -> list[Suppression]:
    """The config's suppressions of a cluster, then those made from Slack (when Redis is given)."""
    found = [c.suppression() for c in cluster_config.suppressions]
    if redis is not None:
        found += Suppressions(redis).active(cluster, now)
    return found

