"""The front desk of the web process: a parsed request in, a short reply out, a job enqueued maybe.

Handlers call it for typed commands, clicks and mentions alike, so access
control, de-duplication and the audit line happen in one place. It does only
fast things (Redis calls with a 1 s timeout, and none for a while after one failed), because
Slack waits for the ack.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from bot import access, audit, schedules, suppressions
from bot import queue as jobqueue
from bot.config import Config, ConfigurationError
from checks.suppression import Suppression
from handlers import grammar
from handlers.grammar import Origin
from handlers.markup import escape_mrkdwn


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
    blocks: list[dict] | None = None  # Block Kit (buttons), when the reply has more than text


QUEUE_DOWN = ("I can't reach my job queue (Redis) right now, so nothing was started. "
              "Try again in a minute; if it persists, tell whoever runs meshbot.")


class Desk:
    def __init__(self, config: Config, q, catalogue: Catalogue | None = None):
        self.config = config
        self.queue = q
        self.catalogue = catalogue or Catalogue.load()
        self.breaker = jobqueue.Breaker()  # every Redis call below goes through it

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
            case grammar.DigestListRequest() | grammar.DigestNowRequest() | grammar.DigestSubscribeRequest() | \
                    grammar.DigestUnsubscribeRequest():
                try:
                    with self.breaker:
                        return self._digest(request, origin, key)
                except jobqueue.QueueDown:
                    audit.record(origin, "digest", "queue-down")
                    return Reply(QUEUE_DOWN)
            case grammar.SuppressRequest() | grammar.UnsuppressRequest() | grammar.SuppressionsRequest():
                try:
                    with self.breaker:
                        return self._suppression(request, origin)
                except jobqueue.QueueDown:
                    audit.record(origin, "suppress", "queue-down")
                    return Reply(QUEUE_DOWN)
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
        request = grammar.CheckRequest(request.targets, cluster, request.deep, request.namespace)
        if not access.allowed(self.config.clusters[cluster], origin.user, origin.channel,
                              origin.user_name, origin.channel_name):
            audit.record(origin, request.text, "denied")
            return Reply(f"You can't run checks on `{cluster}` from here: it is limited to certain channels or "
                         "people. `/mesh clusters` shows the ones you may use.")
        payload = {"kind": "check", "targets": list(request.targets), "cluster": cluster}
        if request.deep:
            payload["deep"] = True
        if request.namespace:
            payload["namespace"] = request.namespace
        every = ", reading every sidecar's log," if request.deep else ""
        where = f" (namespace {request.namespace})" if request.namespace else ""
        return self._enqueue(payload, origin, key, request.text,
                             f"Checking {' '.join(request.targets)}{where} on {cluster}{every}… results will appear "
                             "in this channel.")

    def _suppression(self, request: grammar.SuppressionRequest, origin: Origin) -> Reply:
        """Suppress, lift or list configuration findings: Redis only, no job (bot.suppressions)."""
        from bot import render  # Block Kit for the buttons; it imports the check engine, which the desk need not load

        store = suppressions.Suppressions(self.queue.connection)
        if isinstance(request, grammar.SuppressionsRequest):
            named = [request.cluster] if request.cluster else access.usable_clusters(
                self.config, origin.user, origin.channel, origin.user_name, origin.channel_name)
            for name in named:
                if not self._may(name, origin):
                    audit.record(origin, f"suppressions {name}", "denied")
                    return Reply(f"You can't see `{name}` from here: it is limited to certain channels or people.")
            listing = [(name, s) for name in named
                       for s in suppressions.for_cluster(self.config.clusters[name], name, self.queue.connection)]
            audit.record(origin, "suppressions" + (f" {request.cluster}" if request.cluster else ""), "answered")
            message = render.suppressions(listing, named)
            return Reply(message.text, blocks=message.to_json()["blocks"])
        cluster = request.cluster or self._default_cluster()
        if cluster is None:
            audit.record(origin, request.text, "invalid", reason="no cluster")
            return Reply("Which cluster? Add `on CLUSTER`; `/mesh clusters` lists them.")
        request = dataclasses.replace(request, cluster=cluster)
        if not self._may(cluster, origin):
            audit.record(origin, request.text, "denied")
            return Reply(f"You can't change what is reported on `{cluster}` from here: it is limited to certain "
                         "channels or people.")
        if isinstance(request, grammar.UnsuppressRequest):
            lifted = store.remove(cluster, request.code, request.object)
            if lifted is None:
                audit.record(origin, request.text, "invalid", reason="no such suppression")
                configured = any(c.code == request.code and c.object == request.object
                                 for c in self.config.clusters[cluster].suppressions)
                return Reply(f"`{request.code} {escape_mrkdwn(request.object)}` is suppressed by meshbot's config "
                             "file on this cluster: ask whoever runs meshbot." if configured else
                             f"Nothing suppresses `{request.code} {escape_mrkdwn(request.object)}` on `{cluster}`. "
                             f"`/mesh suppressions {cluster}` lists what does.")
            audit.record(origin, request.text, "unsuppressed", cluster=cluster, code=request.code,
                         object=request.object, was_by=lifted.by)
            return Reply(f"Lifted: `{request.code} {escape_mrkdwn(request.object)}` is reported on `{cluster}` again "
                         "from the next check.")
        now = time.time()
        made = Suppression(request.code, request.object, origin.user, request.reason, now + request.seconds, now,
                           origin.user_name)
        store.add(cluster, made)
        audit.record(origin, request.text, "suppressed", cluster=cluster, code=made.code, object=made.object,
                     until=made.until, reason=made.reason or None)
        message = render.suppressed(cluster, made)
        return Reply(message.text, blocks=message.to_json()["blocks"])

    def _may(self, cluster: str, origin: Origin) -> bool:
        return access.allowed(self.config.clusters[cluster], origin.user, origin.channel, origin.user_name,
                              origin.channel_name)

    def _digest(self, request: grammar.DigestRequest, origin: Origin, key: str) -> Reply:
        subscriptions = schedules.Subscriptions(self.queue.connection)
        match request:
            case grammar.DigestListRequest():
                audit.record(origin, "digest list", "answered")
                return Reply(self._digest_list(origin))
            case grammar.DigestNowRequest(cluster=cluster):
                what = "digest now" + (f" {cluster}" if cluster else "")
                names, refused = self._digest_clusters((cluster,) if cluster else (), origin, what)
                if refused:
                    return refused
                now = schedules.Schedule("now", origin.channel, "", clusters=tuple(names))
                payload = schedules.digest_payload(now, datetime.now(UTC).isoformat(), origin)
                return self._enqueue(payload, origin, key, what,
                                     f"Building a digest of {', '.join(names)}… it will appear in this channel.")
            case grammar.DigestSubscribeRequest(cron=cron, clusters=named):
                what = f'digest subscribe "{cron}" {" ".join(named)}'.strip()
                try:
                    parsed = schedules.trigger(cron)
                except schedules.BadCron as exc:
                    audit.record(origin, what, "invalid", reason="bad cron")
                    return Reply(f"I can't use that schedule: {escape_mrkdwn(str(exc))}.\n"
                                 f"For example {schedules.EXAMPLE}.")
                gap = schedules.too_often(parsed)
                if gap:
                    audit.record(origin, what, "invalid", reason="too often")
                    every = int(gap.total_seconds() // 60)
                    return Reply(f"`{escape_mrkdwn(cron)}` would post every {every} minutes; digests "
                                 f"may come at most once an hour. For example {schedules.EXAMPLE}.")
                names, refused = self._digest_clusters(named, origin, what)
                if refused:
                    return refused
                made = subscriptions.add(origin.channel, cron, tuple(names), origin.user, origin.user_name,
                                         origin.channel_name, request=key)
                audit.record(origin, what, "subscribed", schedule=made.id)
                first = parsed.get_next_fire_time(None, datetime.now(UTC))
                return Reply(f"Subscribed this channel to digest `{made.id}` of {', '.join(names)} "
                             f"at `{escape_mrkdwn(cron)}` "
                             f"(UTC); the first is due {first:%a %d %b %H:%M} UTC. "
                             f"`/mesh digest unsubscribe {made.id}` stops it.")
            case grammar.DigestUnsubscribeRequest(id=sid):
                what = f"digest unsubscribe {sid}"
                found = subscriptions.get(sid)
                if found is None:
                    audit.record(origin, what, "invalid", reason="no such subscription")
                    if any(s.id == sid for s in schedules.from_config(self.config)):
                        return Reply(f"`{sid}` comes from meshbot's config file: ask whoever runs meshbot.")
                    return Reply(f"There is no digest `{escape_mrkdwn(sid)}`. "
                                 "`/mesh digest list` shows this channel's digests.")
                if not found.posts_in(origin.channel, origin.channel_name):
                    audit.record(origin, what, "denied", reason="another channel")
                    return Reply(f"`{sid}` posts in <#{found.channel}>: unsubscribe it from there.")
                subscriptions.remove(sid)
                audit.record(origin, what, "unsubscribed", schedule=sid)
                return Reply(f"Unsubscribed: digest `{sid}` will not be posted again.")
        raise AssertionError(request)

    def _digest_clusters(self, named, origin: Origin, what: str) -> tuple[list[str], Reply | None]:
        """The clusters a digest may cover: those named, each allowed, or else every one the asker may use here."""
        for name in named:
            if not access.allowed(self.config.clusters[name], origin.user, origin.channel, origin.user_name,
                                  origin.channel_name):
                audit.record(origin, what, "denied", cluster=name)
                return [], Reply(f"You can't run checks on `{name}` from here: it is limited to certain channels or "
                                 "people, so it can't be in a digest here. `/mesh clusters` shows the ones you may "
                                 "use.")
        names = list(named) or access.usable_clusters(self.config, origin.user, origin.channel, origin.user_name,
                                                      origin.channel_name)
        if not names:
            audit.record(origin, what, "invalid", reason="no cluster")
            return [], Reply("There are no clusters you may check from here, so there is nothing to digest.")
        return names, None

    def _digest_list(self, origin: Origin) -> str:
        every = schedules.all_schedules(self.config, self.queue.connection)
        here = [s for s in every if s.posts_in(origin.channel, origin.channel_name)]
        elsewhere = len(every) - len(here)
        others = f"\n({elsewhere} more in other channels.)" if elsewhere else ""
        if not here:
            return f"No digests are posted in this channel. Start one with {schedules.EXAMPLE}.{others}"
        now, lines = datetime.now(UTC), []
        for s in here:
            due = s.next_fire(now)
            lines.append(
                f"• `{s.id}` `{s.cron}` ({s.timezone}): {', '.join(s.clusters) or 'every cluster'}"
                + ("" if list(s.checks) == ["all"] else f", checks {' '.join(s.checks)}")
                + (", only when something changed" if s.quiet else "")
                + (f"; next {due.astimezone(UTC):%a %d %b %H:%M} UTC" if due else "")
                + (" · from the config file" if s.by is None else f" · by <@{s.by}>"))
        return "Digests posted in this channel:\n" + "\n".join(lines) + others

    def _enqueue(self, payload: dict, origin: Origin, key: str, what: str, reply: str) -> Reply:
        payload["origin"] = origin.to_json()
        try:
            with self.breaker:
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
