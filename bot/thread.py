"""Post a job's Slack messages exactly once each, even when the job runs again after a crash at any point.

A worker killed mid-job has its job run again from the start. Every message a job posts has a stable key
(``parent``, ``reply:CHECK:0``…), and its post goes in three steps:

1. the intent is written to Redis (``intent:KEY``, with the time), before Slack is called;
2. the message is posted carrying Slack message metadata: event_type ``meshbot_post``, event_payload
   ``{"job": JOB_ID, "key": KEY}``;
3. Slack's ts is written to Redis under KEY.

A re-run that finds KEY's ts skips the post (or, for the parent, updates it). One that finds only the intent
cannot tell whether the first run's post reached Slack: it was killed during the call, or after the answer but
before step 3, or Redis went away in between. It looks for the message in the channel, by its metadata
(conversations.history for a parent, conversations.replies in a thread, from the intent's time on), adopts it
when found and posts only when not. A post that fails with a 5xx or a timeout is ambiguous the same way and
is looked for the same way before it is tried again (bot.slackretry has the retry budget). Updates need none
of this: chat.update with the same ts is idempotent. A file's upload has no metadata, so it is looked for
among the thread's files by its name.

What this assumes: Slack has finished a call it received by the time the re-run looks (the re-run starts
seconds later, bot.worker); and Redis keeps what it acknowledged (deploy/ runs it with appendfsync always).
Where the lookup is impossible (a channel given by name, a DM without im:history) it logs a warning and posts:
a possible duplicate is better than a lost answer.
"""

from __future__ import annotations

import logging
import time

from slack_sdk.errors import SlackApiError

from bot import slackretry
from bot.render import Message

log = logging.getLogger("meshbot.thread")
KEEP = 7 * 24 * 3600
EVENT_TYPE = "meshbot_post"
CLOCK_SLACK = 120.0  # seconds looked back before an intent's time: the worker's clock and Slack's may differ
PAGE = 200


class Thread:
    def __init__(self, client, redis, job_id: str, channel: str, thread_ts: str | None = None):
        self.client, self.redis, self.channel, self.job_id = client, redis, channel, job_id
        self.key = f"meshbot:posted:{job_id}"
        self.thread_ts = thread_ts  # set for mentions: everything goes in the asker's thread

    @property
    def started(self) -> bool:
        """Whether an earlier run of this job already posted the parent (or may have: its intent is recorded)."""
        return bool(self.redis.hexists(self.key, "parent") or self.redis.hexists(self.key, "intent:parent"))

    @property
    def root(self) -> str | None:
        parent = self.redis.hget(self.key, "parent")
        return self.thread_ts or (parent.decode() if parent else None)

    def start(self, message: Message) -> None:
        """Post the parent message, or update it when it was posted already (by this run or a previous one)."""
        parent = self.redis.hget(self.key, "parent")
        if parent is None:
            sent = self._post("parent", self.thread_ts, message)
            if sent["found"] is None:  # posted just now, with this content
                return
            parent = sent["ts"]
        else:
            parent = parent.decode()
        self.client.chat_update(channel=self._channel(), ts=parent, text=message.text, blocks=message.blocks)

    def reply(self, name: str, messages: list[Message]) -> None:
        """Post ``messages`` in the thread, each once; ``name`` must be stable across runs (a check id)."""
        for i, message in enumerate(messages):
            field = f"reply:{name}:{i}"
            if not self.redis.hexists(self.key, field):
                self._post(field, self.root, message)
            if message.file and not self.redis.hexists(self.key, field + ":file"):
                self._upload(field + ":file", message.file)

    # The three steps, and the lookup.

    def _post(self, field: str, thread_ts: str | None, message: Message) -> dict:
        """Post ``message`` once under ``field``; returns {"ts", "found"} where found is the earlier post's ts."""
        found = self._earlier(field, thread_ts, lambda: self._find_message(field, thread_ts))
        if found is not None:
            return {"ts": found, "found": found}
        metadata = {"event_type": EVENT_TYPE, "event_payload": {"job": self.job_id, "key": field}}
        channel = self._channel()
        sent = self._ambiguous(field, lambda: self.client.chat_postMessage(
            channel=channel, thread_ts=thread_ts, text=message.text, blocks=message.blocks, metadata=metadata),
            lambda: self._find_message(field, thread_ts))
        if isinstance(sent, str):  # an attempt that failed had posted it after all
            return {"ts": sent, "found": sent}
        # chat.update wants the channel's id; a digest's channel may be configured by name (#ops).
        self._remember(**{field: sent["ts"]}, **({"channel": sent["channel"]} if field == "parent" else {}))
        return {"ts": sent["ts"], "found": None}

    def _upload(self, field: str, file: tuple[str, str]) -> None:
        filename, content = file
        root = self.root
        if self._earlier(field, root, lambda: self._find_file(filename, root, field)) is not None:
            return
        channel = self._channel()
        self._ambiguous(field, lambda: self.client.files_upload_v2(
            channel=channel, thread_ts=root, filename=filename, title=filename, content=content),
            lambda: self._find_file(filename, root, field))
        self._remember(**{field: "1"})

    def _earlier(self, field: str, thread_ts: str | None, find) -> str | None:
        """Step 1, or, when an earlier run got that far, what it posted (remembered now), if anything."""
        if not self.redis.hexists(self.key, "intent:" + field):
            self._remember(**{"intent:" + field: repr(time.time())})
            return None
        found = find()
        if found is not None:
            log.info("job %s: found its earlier %s in Slack (ts %s); not posting it again", self.job_id, field, found)
            self._remember(**{field: found})
        return found

    def _ambiguous(self, field: str, call, find):
        """``call()``, and after a failure that may have taken effect, look (``find()``) before trying again."""
        until, attempt = slackretry.deadline(), 0
        while True:
            try:
                return call()
            except Exception as exc:
                if not slackretry.is_transient(exc) or not slackretry.wait(attempt, until):
                    raise
                attempt += 1
                found = find()
                if found is not None:
                    self._remember(**{field: found})
                    return found

    def _find_message(self, field: str, thread_ts: str | None) -> str | None:
        wanted = {"job": self.job_id, "key": field}
        for m in self._read(thread_ts, field):
            metadata = m.get("metadata") or {}
            if metadata.get("event_type") == EVENT_TYPE and metadata.get("event_payload") == wanted:
                return m["ts"]
        return None

    def _find_file(self, filename: str, thread_ts: str | None, field: str) -> str | None:
        for m in self._read(thread_ts, field):
            if any(f.get("name") == filename for f in m.get("files") or []):
                return "1"
        return None

    def _read(self, thread_ts: str | None, field: str):
        """The channel's (or thread's) messages since ``field``'s intent, every page; none when Slack refuses."""
        since = float(self.redis.hget(self.key, "intent:" + field) or 0) - CLOCK_SLACK
        args = {"channel": self._channel(), "oldest": f"{max(since, 0):.6f}", "inclusive": True,
                "include_all_metadata": True, "limit": PAGE}
        cursor = None
        try:
            while True:
                if thread_ts:
                    page = self.client.conversations_replies(ts=thread_ts, cursor=cursor, **args)
                else:
                    page = self.client.conversations_history(cursor=cursor, **args)
                yield from page.get("messages") or []
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not page.get("has_more") or not cursor:
                    return
        except SlackApiError as exc:
            if slackretry.is_transient(exc):
                raise
            log.warning("job %s: cannot look for its earlier %s in %s (Slack answered %s); posting it",
                        self.job_id, field, args["channel"], exc.response.get("error"))

    def _channel(self) -> str:
        """The channel's id once Slack has told it (with the parent), else the channel as given."""
        posted = self.redis.hget(self.key, "channel")
        return posted.decode() if posted else self.channel

    def _remember(self, **fields: str) -> None:
        with self.redis.pipeline() as p:
            p.hset(self.key, mapping=fields).expire(self.key, KEEP).execute()
