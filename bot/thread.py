"""Post a job's Slack messages at most once each, even when the job runs a second time.

A worker killed mid-job has its job run again from the start. Each message's
ts is stored in Redis under the job id as soon as Slack returns it, so the
re-run updates the parent instead of posting another, and skips replies
already posted. (A crash between Slack's answer and the Redis write could
still duplicate that one message: a window of a few milliseconds.)
"""

from __future__ import annotations

from bot.render import Message

KEEP = 7 * 24 * 3600


class Thread:
    def __init__(self, client, redis, job_id: str, channel: str, thread_ts: str | None = None):
        self.client, self.redis, self.channel = client, redis, channel
        self.key = f"meshbot:posted:{job_id}"
        self.thread_ts = thread_ts  # set for mentions: everything goes in the asker's thread

    @property
    def started(self) -> bool:
        """Whether an earlier run of this job already posted the parent."""
        return self.redis.hexists(self.key, "parent")

    @property
    def root(self) -> str | None:
        parent = self.redis.hget(self.key, "parent")
        return self.thread_ts or (parent.decode() if parent else None)

    def start(self, message: Message) -> None:
        """Post the parent message, or update it when it was posted already (by this run or a previous one)."""
        parent = self.redis.hget(self.key, "parent")
        if parent:
            self.client.chat_update(channel=self._channel(), ts=parent.decode(), text=message.text,
                                    blocks=message.blocks)
            return
        sent = self.client.chat_postMessage(channel=self.channel, thread_ts=self.thread_ts, text=message.text,
                                            blocks=message.blocks)
        # chat.update wants the channel's id; a digest's channel may be configured by name (#ops).
        self._remember(parent=sent["ts"], channel=sent["channel"])

    def reply(self, name: str, messages: list[Message]) -> None:
        """Post ``messages`` in the thread, each once; ``name`` must be stable across runs (a check id)."""
        channel = self._channel()
        for i, message in enumerate(messages):
            field = f"reply:{name}:{i}"
            if not self.redis.hexists(self.key, field):
                sent = self.client.chat_postMessage(channel=channel, thread_ts=self.root, text=message.text,
                                                    blocks=message.blocks)
                self._remember(**{field: sent["ts"]})
            if message.file and not self.redis.hexists(self.key, field + ":file"):
                filename, content = message.file
                self.client.files_upload_v2(channel=channel, thread_ts=self.root, filename=filename,
                                            title=filename, content=content)
                self._remember(**{field + ":file": "1"})

    def _channel(self) -> str:
        """The channel's id once Slack has told it (with the parent), else the channel as given."""
        posted = self.redis.hget(self.key, "channel")
        return posted.decode() if posted else self.channel

    def _remember(self, **fields: str) -> None:
        with self.redis.pipeline() as p:
            p.hset(self.key, mapping=fields).expire(self.key, KEEP).execute()
