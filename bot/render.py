"""The one module that knows Block Kit: check reports and guide answers as Slack messages.

Every message carries a plain ``text`` fallback (from bot.text) for notifications
and clients that do not show blocks. Slack's limits are kept here: at most 50
blocks a message (longer output becomes several messages) and 3,000 characters
a section (longer text is split); evidence too long to read inline is uploaded
as a file and only its start is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.text import counts_line, headline, result_text
from checks.model import Result, Status
from checks.runner import Report
from handlers.markup import escape_mrkdwn

MAX_BLOCKS = 50
MAX_SECTION = 3000
INLINE_EVIDENCE_LINES = 15  # more than this, or more than one section, goes into a file
RUN_ACTION = "meshbot_run"  # button action_id prefix; the value is a /mesh command line
SECTION_ACTION = "meshbot_section"  # "not sure" button action_id prefix; the value is a guide section id


@dataclass
class Message:
    text: str
    blocks: list[Block] = field(default_factory=list)
    file: tuple[str, str] | None = None  # (filename, content), uploaded into the same thread

    def to_json(self) -> dict:
        return {"text": self.text, "blocks": [b.to_dict() for b in self.blocks]}


def running(targets: Sequence[str], cluster: str, again: bool = False) -> Message:
    what = f"Checking {' '.join(targets)} on {cluster}…"
    note = " (again: the first worker stopped before finishing)" if again else ""
    return Message(what + note, [_section(f"*{escape_mrkdwn(what)}*{note}")])


def finished(report: Report, command: str) -> Message:
    text = headline(report)
    blocks = [
        _section(f"*{escape_mrkdwn(text)}*"),
        ContextBlock(elements=[
            MarkdownTextObject(text=escape_mrkdwn(f"/mesh {command}") + " · details in the thread")]),
        ActionsBlock(elements=[_button("Re-run", command, f"{RUN_ACTION}_rerun")]),
    ]
    return Message(text, blocks)


def superseded(report: Report, targets: Sequence[str], groups: Sequence[str], cluster: str) -> Message:
    """``check mixer`` on an istiod mesh: one line saying what replaced it, and a button per successor group."""
    what = " ".join(targets)
    text = (f"{report.cluster} runs Istio {report.istio.version or '(istiod)'} with istiod: {what} is gone there."
            f" Its guide sections are answered today by the {', '.join(groups)} checks.")
    buttons = [_button(f"Check {group}", f"check {group} on {cluster}", f"{RUN_ACTION}_{group}") for group in groups]
    return Message(text, [_section(escape_mrkdwn(text)), ActionsBlock(elements=buttons)])


def could_not_run(command: str, reason: str) -> Message:
    text = f"Could not run /mesh {command}: {reason}"
    return Message(text, [_section(escape_mrkdwn(text))])


def finding(result: Result, excerpt: str | None = None, url: str | None = None,
            cluster: str | None = None, suppress_on: str | None = None) -> list[Message]:
    """One non-passing result, one story: status and summary, evidence, the check's fix (real names and
    values), then the guide's excerpt with its link.

    ``cluster`` names the cluster, for threads that hold several (digests); ``suppress_on`` (a cluster) adds a
    button that suppresses a configuration finding (one with a code) there.
    """
    where = f"`{escape_mrkdwn(cluster)}` · " if cluster else ""
    blocks: list[Block] = [
        _section(f"{where}*{result.status.value.upper()}* `{result.check}` {escape_mrkdwn(result.summary)}")]
    upload = None
    if result.evidence:
        # Pod logs and the like: text anyone can write, so `<!channel>` in it must not ping (files are not mrkdwn).
        evidence = escape_mrkdwn("\n".join(result.evidence))
        if len(result.evidence) > INLINE_EVIDENCE_LINES or len(evidence) > MAX_SECTION - 8:
            upload = (f"{result.check}-evidence.txt", "\n".join(result.evidence))
            shown = escape_mrkdwn("\n".join(result.evidence[:INLINE_EVIDENCE_LINES]))[: MAX_SECTION - 100]
            blocks += _sections(shown, code=True)
            blocks.append(_context(f"{len(result.evidence)} lines of evidence; the whole of it is in the file below."))
        else:
            blocks += _sections(evidence, code=True)
    if result.fix:
        blocks.append(_section("*Fix*"))
        blocks += _sections(escape_mrkdwn(result.fix), code=True)
    if excerpt:
        section = escape_mrkdwn(result.section)
        link = f" (<{url}|guide: {section}>)" if url else f" (guide: #{section})"
        blocks.append(DividerBlock())
        blocks += _sections(f"*{escape_mrkdwn(result.title)}*{link}\n{excerpt}")
    if suppress_on and result.code and result.objects:
        command = f"suppress {result.code} {result.objects[0]} for 30d on {suppress_on}"
        blocks.append(ActionsBlock(elements=[_button("Suppress for 30 days", command, f"{RUN_ACTION}_suppress")]))
    return _paginate(escape_mrkdwn((f"{cluster}: " if cluster else "") + result_text(result)), blocks, upload)


def passing(results: Sequence[Result], lift_on: str | None = None) -> list[Message]:
    """Passing and skipped checks, all in one reply; with ``lift_on`` (a cluster), a button lifts each finding
    suppressed from Slack (the config's are lifted in the config)."""
    lines = [f"{r.status.value.upper()} `{r.check}` {escape_mrkdwn(r.summary)}" for r in results]
    counts = ", ".join(f"{sum(r.status is s for r in results)} {s.value}"
                       for s in (Status.PASS, Status.SKIP) if any(r.status is s for r in results))
    text = f"{counts}: " + ", ".join(dict.fromkeys(r.check for r in results))
    blocks = [_section(f"*{counts}*")] + _sections("\n".join(lines))
    lifts = [r for r in results if lift_on and r.code and r.objects and r.status is Status.SKIP
             and r.summary.startswith("suppressed by <@")]
    if lifts:
        blocks.append(ActionsBlock(elements=[
            _button(f"Report {r.code} {r.objects[0]} again"[:75], f"unsuppress {r.code} {r.objects[0]} on {lift_on}",
                    f"{RUN_ACTION}_unsuppress_{i}") for i, r in enumerate(lifts[:25])]))
    return _paginate(text, blocks)


def suppressed(cluster: str, s) -> Message:
    """The asker's confirmation of a new suppression (checks.suppression.Suppression), with a button to lift it."""
    text = (f"Suppressed {s.code} {s.object} on {cluster} {s.until_text()}: it still shows in check results, as "
            f"suppressed, and no longer counts as a problem.")
    lift = f"unsuppress {s.code} {s.object} on {cluster}"
    return Message(text, [_section(escape_mrkdwn(text) + f"\n`/mesh {escape_mrkdwn(lift)}` lifts it."),
                          ActionsBlock(elements=[_button("Lift it now", lift, f"{RUN_ACTION}_unsuppress")])])


def suppressions(listing: Sequence, clusters: Sequence[str]) -> Message:
    """`/mesh suppressions`: (cluster, Suppression) pairs, with a button to lift each made from Slack."""
    if not listing:
        text = f"Nothing is suppressed on {', '.join(clusters) or 'any cluster you may use here'}."
        return Message(text, [_section(escape_mrkdwn(text))])
    lines = []
    for cluster, s in listing:
        why = f" ({s.reason})" if s.reason else ""
        lines.append(f"• `{escape_mrkdwn(cluster)}` `{s.code}` {escape_mrkdwn(s.object)}{escape_mrkdwn(why)}: by "
                     f"{s.who if s.by != 'config' else 'the config file'}, {escape_mrkdwn(s.until_text())}")
    text = f"{len(listing)} suppressed finding(s): " + "; ".join(f"{c} {s.code} {s.object}" for c, s in listing)
    blocks = _sections("*Suppressed configuration findings*\n" + "\n".join(lines))
    lifts = [(c, s) for c, s in listing if s.by != "config"][:25]
    if lifts:
        blocks.append(ActionsBlock(elements=[
            _button(f"Lift {s.code} {s.object}"[:75], f"unsuppress {s.code} {s.object} on {c}",
                    f"{RUN_ACTION}_unsuppress_{i}") for i, (c, s) in enumerate(lifts)]))
    return Message(text, blocks[:MAX_BLOCKS])


def answer(question: str, matches: Sequence, clusters: Sequence[str], asker: str | None = None,
           suggestions: Sequence = ()) -> list[Message]:
    """Guide answers, best first, each with buttons to run its checks on the clusters the asker may use.

    ``asker`` (a user id) quotes the question, for answers that are not in the asker's own thread. With no
    confident match, ``suggestions`` (knowledge.Answer.suggestions) become "not sure" and a button per section.
    """
    blocks: list[Block] = [_context(f"<@{asker}> asked: {escape_mrkdwn(question)}"[:MAX_SECTION])] if asker else []
    if not matches and suggestions:
        text = "Not sure; closest sections: " + "; ".join(f"{m.title} ({m.url})" for m in suggestions[:3])
        listed = "\n".join(f"• <{m.url}|{escape_mrkdwn(m.title)}>{_from_guide(m)}" for m in suggestions[:3])
        blocks += _sections(f"Not sure; closest sections:\n{listed}")
        blocks.append(ActionsBlock(elements=[_button(m.title[:75], m.section, f"{SECTION_ACTION}_{i}")
                                             for i, m in enumerate(suggestions[:3])]))
        return [Message(text, blocks)]
    if not matches:
        text = "No section of the troubleshooting guide answers that. `/mesh list` shows what I can check."
        return [Message(text, blocks + [_section(escape_mrkdwn(text))])]
    for i, m in enumerate(matches):
        if i or asker:
            blocks.append(DividerBlock())
        blocks += _sections(f"*<{m.url}|{escape_mrkdwn(m.title)}>*{_from_guide(m)}\n{m.excerpt}")
        if m.checks and clusters:
            command = "check " + " ".join(m.checks)
            blocks.append(ActionsBlock(elements=[
                _button(f"Run these checks on {c}"[:75], f"{command} on {c}", f"{RUN_ACTION}_{i}_{j}")
                for j, c in enumerate(clusters[:25])]))
    text = "From the guide: " + "; ".join(f"{m.title} ({m.url})" for m in matches)
    return _paginate(text, blocks)


def _from_guide(match) -> str:
    """Which guide an answer quotes (knowledge.Match.guides); meshbot's own words name none."""
    names = [g for g in getattr(match, "guides", ()) if g != "builtin"]
    return f" · _{escape_mrkdwn(' + '.join(names))}_" if names else ""


DIGEST_LIST_MAX = 25  # per kind of change in the parent; the thread has every finding


def digest(clusters: Sequence, changes, at: float, schedule: str) -> Message:
    """A digest's parent: a line per cluster, then what changed since the channel's previous digest.

    ``clusters`` are bot.digest.ClusterDigest, ``changes`` a bot.digest.Changes.
    """
    title = f"Mesh digest, {_when(at)}"
    lines = []
    for c in clusters:
        if c.unreachable:
            lines.append(f"• `{escape_mrkdwn(c.name)}` *unreachable*: {escape_mrkdwn(c.unreachable)}")
        else:
            lines.append(f"• `{escape_mrkdwn(c.name)}` Istio {escape_mrkdwn(c.report.istio.version or 'not found')}: "
                         f"{counts_line(c.report)}")
    if changes.previous_at is None:
        since = ["First digest in this channel."]
    else:
        since = [f"*Since the previous digest ({_when(changes.previous_at)})*"]
        since += _changes("New", changes.new, at) + _changes("Resolved", changes.resolved, at)
        since += _changes("Still failing", changes.still, at)
        since += _changes("Suppressed", changes.suppressed, at)
        if changes.unchanged_config:
            since.append(f"{changes.unchanged_config} configuration finding(s) unchanged, not listed again "
                         "(`/mesh check config` shows them all)")
        if changes.unreachable:
            since.append("Now unreachable: " + ", ".join(f"`{escape_mrkdwn(n)}`" for n in changes.unreachable))
        if changes.reachable_again:
            since.append("Reachable again: " + ", ".join(f"`{escape_mrkdwn(n)}`" for n in changes.reachable_again))
        if changes.first:
            since.append("First digest here for: " + ", ".join(f"`{escape_mrkdwn(n)}`" for n in changes.first))
        if not changes.any:
            since.append("Nothing changed.")
    unsubscribe = f" · `/mesh digest unsubscribe {schedule}`" if schedule.startswith("s") else ""
    footer = f"schedule `{escape_mrkdwn(schedule)}` · details in the thread{unsubscribe}"
    blocks = [_section(f"*{title}*")] + _sections("\n".join(lines)) + _sections("\n".join(since))
    text = (f"{title}: {len(clusters)} cluster{'s' if len(clusters) != 1 else ''}, {len(changes.new)} new, "
            f"{len(changes.resolved)} resolved, {len(changes.still)} still failing")
    if any(c.unreachable for c in clusters):
        text += f", {sum(bool(c.unreachable) for c in clusters)} unreachable"
    return Message(text, blocks[:MAX_BLOCKS - 1] + [_context(footer)])


def unreachable(cluster: str, cause: str) -> list[Message]:
    text = f"{cluster}: could not be checked: {cause}"
    return [Message(text, [_section(f"`{escape_mrkdwn(cluster)}` · *ERROR* could not be checked: "
                                    f"{escape_mrkdwn(cause)}\nEvery check on it is an error (could not tell).")])]


def _changes(label: str, changes: Sequence, at: float) -> list[str]:
    if not changes:
        return []
    shown = []
    for c in changes[:DIGEST_LIST_MAX]:
        note = c.status.upper()
        if c.was:
            note += f" (was {c.was.upper()})"
        elif label == "Still failing" and c.since is not None:
            note += f" for {duration(at - c.since)}"
        elif label in ("Resolved", "Suppressed"):
            note = f"was {c.status.upper()}"
        what = f"`{c.code}` {escape_mrkdwn(c.object)}" if c.code else f"`{c.check}`"
        shown.append(f"    • `{escape_mrkdwn(c.cluster)}` {what} {note}")
    if len(changes) > DIGEST_LIST_MAX:
        shown.append(f"    • and {len(changes) - DIGEST_LIST_MAX} more (in the thread)")
    return [f"{label} ({len(changes)}):"] + shown


def duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    return f"{mins} min" if mins else "under a minute"


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%a %d %b %Y %H:%M UTC")


def _paginate(text: str, blocks: list[Block], upload: tuple[str, str] | None = None) -> list[Message]:
    pages = [blocks[i:i + MAX_BLOCKS] for i in range(0, len(blocks), MAX_BLOCKS)] or [[]]
    messages = [Message(text if not i else f"{text} (continued)", page) for i, page in enumerate(pages)]
    messages[-1].file = upload
    return messages


def _sections(text: str, code: bool = False) -> list[Block]:
    """``text`` as as many sections as it takes, cut at line ends; code stays fenced in each."""
    room = MAX_SECTION - (8 if code else 0)
    chunks, current = [], ""
    for line in text.splitlines() or [""]:
        while len(line) > room:  # a single over-long line: hard cut
            chunks, current = chunks + ([current] if current else []), ""
            chunks.append(line[:room])
            line = line[room:]
        if current and len(current) + 1 + len(line) > room:
            chunks.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    chunks.append(current)
    return [_section(f"```\n{c}\n```" if code else c) for c in chunks if c.strip()]


def _section(mrkdwn: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=mrkdwn))


def _context(mrkdwn: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=mrkdwn)])


def _button(label: str, command: str, action_id: str) -> ButtonElement:
    return ButtonElement(text=label, action_id=action_id, value=command[:2000])


