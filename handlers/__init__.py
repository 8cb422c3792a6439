"""Slack listeners: turn a slash command, a button click or a mention into a request, ack, hand it on.

Nothing here knows Kubernetes, the checks or the queue: ``desk`` (bot.desk.Desk)
is passed in and does access control, de-duplication, enqueueing and the audit.
A click carries a `/mesh` command line as its value and goes through the same
grammar, so it makes the same request, and the same job, as the typed command.
"""

from __future__ import annotations

import re

from handlers.grammar import VERBS, AskRequest, Origin

RUN_ACTION = re.compile(r"^meshbot_run")  # bot.render.RUN_ACTION and its suffixes
SECTION_ACTION = re.compile(r"^meshbot_section")  # bot.render.SECTION_ACTION: a "not sure" reply's buttons
MENTION = re.compile(r"<@[A-Z0-9]+(\|[^>]*)?>")


async def _ack(ack):
    await ack()


def register_all(app, desk) -> None:
    """``app`` is an AsyncApp run with process_before_response: a slash command is answered in its own
    request's task, calling desk.handle inline (it only makes quick Redis calls, and none while Redis is
    failing); anything that calls Slack back runs lazily, after the ack."""

    @app.command("/mesh")
    async def mesh(ack, command):
        origin = Origin("command", command["user_id"], command["channel_id"], command.get("user_name", ""),
                        command.get("channel_name", ""), command.get("team_id", ""))
        # trigger_id is unique per invocation: a re-delivery of the same command finds its first job.
        reply = desk.handle(desk.parse(command.get("text", "")), origin, "command:" + command["trigger_id"])
        if reply.blocks:  # ephemeral: only the asker sees it
            await ack(text=reply.text, blocks=reply.blocks)
        else:
            await ack(reply.text)

    async def click(body, action, respond):
        channel = body.get("channel") or {}
        origin = Origin("click", body["user"]["id"], channel.get("id", ""), body["user"].get("username", ""),
                        channel.get("name", ""), (body.get("team") or {}).get("id", ""))
        reply = desk.handle(desk.parse(action["value"]), origin, "click:" + body["trigger_id"])
        extra = {"blocks": reply.blocks} if reply.blocks else {}
        await respond(text=reply.text, response_type="ephemeral", replace_original=False, **extra)

    app.action(RUN_ACTION)(ack=_ack, lazy=[click])

    async def section(body, action, respond):
        # A "not sure" button: answer with that section (a question that is a section id), in the same thread.
        channel, message = body.get("channel") or {}, body.get("message") or {}
        thread = message.get("thread_ts") or (body.get("container") or {}).get("thread_ts") or message.get("ts")
        origin = Origin("click", body["user"]["id"], channel.get("id", ""), body["user"].get("username", ""),
                        channel.get("name", ""), (body.get("team") or {}).get("id", ""), thread_ts=thread)
        reply = desk.handle(AskRequest(action["value"]), origin, "click:" + body["trigger_id"])
        await respond(text=reply.text, response_type="ephemeral", replace_original=False)

    app.action(SECTION_ACTION)(ack=_ack, lazy=[section])

    async def mention(body, event, say):
        origin = _event_origin("mention", body, event)
        text = MENTION.sub("", event.get("text", "")).strip()
        first = text.split()[0].lower() if text else "help"
        request = desk.parse(text) if first in VERBS else AskRequest(text)
        reply = desk.handle(request, origin, "event:" + body["event_id"])
        if reply.job is None:  # nothing queued: the reply is the whole answer
            await say(text=reply.text, thread_ts=origin.thread_ts)

    app.event("app_mention")(ack=_ack, lazy=[mention])
    names: dict[str, str] = {}  # channel id → name, for incident.channel_prefix

    async def message(body, event, context, client):
        if not desk.incident_mode or event.get("subtype") or event.get("bot_id") or not event.get("user"):
            return  # edits, joins, bots (and so ourselves) are never answered
        if context.bot_user_id and f"<@{context.bot_user_id}>" in event.get("text", ""):
            return  # a mention: app_mention answers it
        channel = event["channel"]
        if channel not in names and desk.config.incident.channel_prefix:
            names[channel] = (await client.conversations_info(channel=channel))["channel"].get("name", "")
        if desk.is_incident_channel(channel, names.get(channel, "")) and event.get("text", "").strip():
            desk.handle(AskRequest(event["text"].strip()), _event_origin("incident", body, event),
                        "event:" + body["event_id"])

    app.event("message")(ack=_ack, lazy=[message])


def _event_origin(source: str, body: dict, event: dict) -> Origin:
    return Origin(source, event.get("user", ""), event.get("channel", ""), team=body.get("team_id", ""),
                  thread_ts=event.get("thread_ts") or event.get("ts"))
