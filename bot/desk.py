"""The front desk of the web process: a parsed request in, a short reply out, a job enqueued maybe.

Handlers call it for typed commands, clicks and mentions alike, so access
control, de-duplication and the audit line happen in one place. It does only
fast things (Redis calls with a 1 s timeout), because Slack waits for the ack.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot import access, audit
from bot import queue as jobqueue
from bot.config import Config, ConfigurationError
from handlers import grammar
from handlers.grammar import Origin


@dataclass(frozen=True)
class Catalogue:
    """What exists: check targets (groups, ids, "all") and one line per check for `/mesh list`."""

    targets: frozenset[str]
    listing: str

    @classmethod
    def load(cls) -> Catalogue:
        from checks.catalog import ALL_CHECKS, GROUPS

        lines = [f"`{c.id}` {c.title}" for c in ALL_CHECKS]
        return cls(frozenset(GROUPS) | {"all"} | {c.id for c in ALL_CHECKS}, "\n".join(lines))


@dataclass(frozen=True)
class Reply:
    text: str
    job: str | None = None  # set when a job will answer (queued now, or earlier for a retried request)


QUEUE_DOWN = ("I can't reach my job queue (Redis) right now, so nothing was started. "
              "Try again in a minute; if it persists, tell whoever runs meshbot.")


class Desk:
    def __init__(self, config: Config, q, catalogue: Catalogue | None = None):
        self.config = config
        self.queue = q
        self.catalogue = catalogue or Catalogue.load()

    def parse(self, text: str) -> grammar.Request:
        return grammar.parse(text, self.catalogue.targets, self.config.clusters.keys())

    def handle(self, request: grammar.Request, origin: Origin, key: str) -> Reply:
        """Act on ``request``; returns the reply for the asker. ``key`` identifies the Slack delivery."""
        match request:
            case grammar.CheckRequest():
                return self._check(request, origin, key)
            case grammar.AskRequest(question=question):
                return self._enqueue({"kind": "ask", "question": question}, origin, key, f"ask {question[:200]}",
                                     "Looking that up…")
            case grammar.ClustersRequest():
                audit.record(origin, "clusters", "answered")
                return Reply(self._clusters(origin))
            case grammar.ListRequest():
                audit.record(origin, "list", "answered")
                return Reply("Checks (`/mesh check ID` or a group such as `mixer`):\n" + self.catalogue.listing)
            case grammar.DigestRequest(args=args):
                # RESERVED: the digest issue replaces this with a "digest" job on the same queue.
                audit.record(origin, " ".join(("digest", *args)), "not-available")
                return Reply("Digests are not available yet.")
            case grammar.Invalid(message=message):
                audit.record(origin, "?", "invalid")
                return Reply(message)
            case _:
                audit.record(origin, "help", "answered")
                return Reply("Here is what I can do:\n" + grammar.USAGE)

    def _check(self, request: grammar.CheckRequest, origin: Origin, key: str) -> Reply:
        cluster = request.cluster or self._default_cluster()
        if cluster is None:
            audit.record(origin, request.text, "invalid", reason="no cluster")
            if not self.config.clusters:
                return Reply("No cluster is configured, so there is nothing to check yet.")
            return Reply(f"Which cluster? e.g. `/mesh {request.text} on {sorted(self.config.clusters)[0]}`; "
                         "`/mesh clusters` lists them.")
        request = grammar.CheckRequest(request.targets, cluster)
        if not access.allowed(self.config.clusters[cluster], origin.user, origin.channel,
                              origin.user_name, origin.channel_name):
            audit.record(origin, request.text, "denied")
            return Reply(f"You can't run checks on `{cluster}` from here: it is limited to certain channels or "
                         "people. `/mesh clusters` shows the ones you may use.")
        payload = {"kind": "check", "targets": list(request.targets), "cluster": cluster}
        return self._enqueue(payload, origin, key, request.text,
                             f"Checking {' '.join(request.targets)} on {cluster}… results will appear in this channel.")

    def _enqueue(self, payload: dict, origin: Origin, key: str, what: str, reply: str) -> Reply:
        payload["origin"] = origin.to_json()
        try:
            job_id, new = jobqueue.submit(self.queue, payload, key)
        except jobqueue.QueueDown:
            audit.record(origin, what, "queue-down")
            return Reply(QUEUE_DOWN)
        audit.record(origin, what, "queued" if new else "duplicate", job=job_id)
        return Reply(reply, job_id)

    def _default_cluster(self) -> str | None:
        try:
            return self.config.cluster(None)[0]
        except ConfigurationError:  # no default and several clusters, or none
            return None

    def _clusters(self, origin: Origin) -> str:
        mine = access.usable_clusters(self.config, origin.user, origin.channel, origin.user_name, origin.channel_name)
        if not mine:
            return "There are no clusters you may check from here."
        default = self._default_cluster()
        return "Clusters you may check from here:\n" + "\n".join(
            f"• `{name}`" + (" (default)" if name == default else "") for name in mine)

    @property
    def incident_mode(self) -> bool:
        return bool(self.config.incident.channels or self.config.incident.channel_prefix)

    def is_incident_channel(self, channel: str, name: str = "") -> bool:
        """Channels where questions are answered without a mention (config.incident)."""
        incident = self.config.incident
        named = {channel, name, f"#{name}"} - {"", "#"}
        return bool(named & set(incident.channels)) or bool(
            name and incident.channel_prefix and name.startswith(incident.channel_prefix.lstrip("#")))
