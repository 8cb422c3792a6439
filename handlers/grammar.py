"""The `/mesh` grammar: text in, one request object out.

Plain Python on purpose: no Slack types, no cluster or HTTP client. The valid
targets and cluster names are passed in, so this module stays a pure function
that the typed command, a button's value and (later) the scheduler all share.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from dataclasses import dataclass

from handlers.markup import escape_mrkdwn

VERBS = ("help", "check", "clusters", "list", "ask", "digest")
USAGE = (
    "`/mesh check TARGET [deep] [on CLUSTER]` runs checks (TARGET: a group such as `mixer`, `all`, or a check id;"
    " `deep` reads every sidecar's log, not a sample)\n"
    "`/mesh ask QUESTION` answers from the troubleshooting guide\n"
    "`/mesh clusters` lists the clusters you may check\n"
    "`/mesh list` lists every check\n"
    "`/mesh digest list|now [CLUSTER]|subscribe \"CRON\" [CLUSTERS]|unsubscribe ID` scheduled digests\n"
    "`/mesh help` shows this"
)
DIGEST_USAGE = (
    "`/mesh digest list` shows the digests posted in this channel\n"
    "`/mesh digest now [CLUSTER]` posts a digest here now\n"
    "`/mesh digest subscribe \"CRON\" [CLUSTERS]` posts one here on a schedule, e.g. "
    "`/mesh digest subscribe \"0 9 * * 1-5\" prod` (09:00 UTC, Monday to Friday)\n"
    "`/mesh digest unsubscribe ID` stops one"
)
DIGEST_VERBS = ("list", "now", "subscribe", "unsubscribe")
QUOTED = re.compile(r'^\s*["\u201c\u201d\u201e\u2033](?P<cron>[^"\u201c\u201d\u201e\u2033]*)["\u201c\u201d\u2033]'
                    r"(?P<rest>.*)$")


@dataclass(frozen=True)
class HelpRequest:
    pass


@dataclass(frozen=True)
class CheckRequest:
    targets: tuple[str, ...]
    cluster: str | None = None  # None: the configured default
    deep: bool = False  # read every pod (sidecar logs), not the ones status points at plus a sample

    @property
    def text(self) -> str:
        """The canonical command; buttons carry it so a click parses back into this request."""
        return ("check " + " ".join(self.targets) + (" deep" if self.deep else "")
                + (f" on {self.cluster}" if self.cluster else ""))


@dataclass(frozen=True)
class ClustersRequest:
    pass


@dataclass(frozen=True)
class ListRequest:
    pass


@dataclass(frozen=True)
class AskRequest:
    question: str


@dataclass(frozen=True)
class DigestListRequest:
    pass


@dataclass(frozen=True)
class DigestNowRequest:
    cluster: str | None = None  # None: every cluster the asker may use here


@dataclass(frozen=True)
class DigestSubscribeRequest:
    cron: str  # not validated here: bot.schedules knows cron
    clusters: tuple[str, ...] = ()  # empty: every cluster the asker may use here


@dataclass(frozen=True)
class DigestUnsubscribeRequest:
    id: str


@dataclass(frozen=True)
class Invalid:
    """Text that is not a command; ``message`` is the friendly reply, nothing runs."""

    message: str


DigestRequest = DigestListRequest | DigestNowRequest | DigestSubscribeRequest | DigestUnsubscribeRequest
Request = HelpRequest | CheckRequest | ClustersRequest | ListRequest | AskRequest | DigestRequest | Invalid


def parse(text: str, targets: Collection[str], clusters: Collection[str]) -> Request:
    """Parse what follows `/mesh`; ``targets`` and ``clusters`` are the names that exist."""
    request = _parse(text, targets, clusters)
    # An Invalid quotes what was typed (its templates hold no markup of their own): escape it once, here.
    return Invalid(escape_mrkdwn(request.message)) if isinstance(request, Invalid) else request


def _parse(text: str, targets: Collection[str], clusters: Collection[str]) -> Request:
    words = text.split()
    if not words:
        return HelpRequest()
    verb, args = words[0].lower(), words[1:]
    if verb == "help":
        return HelpRequest()
    if verb == "clusters" and not args:
        return ClustersRequest()
    if verb == "list" and not args:
        return ListRequest()
    if verb == "ask":
        return AskRequest(" ".join(args)) if args else Invalid("Ask a question after `ask`, e.g. "
                                                               "`/mesh ask mixer reports no metrics`.")
    if verb == "digest":
        return _digest(text.strip()[len(words[0]):], clusters)
    if verb == "check":
        return _check(args, targets, clusters)
    if verb in VERBS:  # clusters/list with extra words
        return Invalid(f"`{verb}` takes no arguments: try `/mesh {verb}`.")
    close = difflib.get_close_matches(verb, VERBS, n=1, cutoff=0.6)
    if close:
        return Invalid(f"I don't know `{verb}`. Did you mean `/mesh {' '.join([close[0], *args])}`?\n\n{USAGE}")
    if len(words) > 2:  # reads like a question
        return Invalid(f"I don't know `{verb}`. Did you mean `/mesh ask {text.strip()}`?\n\n{USAGE}")
    return Invalid(f"I don't know `{verb}`.\n\n{USAGE}")


def _check(args: list[str], targets: Collection[str], clusters: Collection[str]) -> Request:
    cluster = None
    deep = any(a.lower() == "deep" for a in args)  # a modifier, wherever it stands (no target is called deep)
    args = [a for a in args if a.lower() != "deep"]
    lowered = [a.lower() for a in args]
    if "on" in lowered:
        at = lowered.index("on")
        rest = args[at + 1:]
        if len(rest) != 1:
            return Invalid("Name one cluster after `on`, e.g. `/mesh check mixer on prod`."
                           + _known("Clusters", clusters))
        cluster, args = rest[0], args[:at]
        if cluster not in clusters:
            return Invalid(f"There is no cluster `{cluster}`.{_hint(cluster, clusters, 'check ' + ' '.join(args))}"
                           + _known("Clusters", clusters))
    if not args:
        return Invalid("Say what to check, e.g. `/mesh check mixer`." + _known("Targets", _groups(targets)))
    chosen = []
    for target in (a.lower() for a in args):
        if target not in targets:
            close = difflib.get_close_matches(target, list(targets), n=1, cutoff=0.5)
            suggestion = f" Did you mean `{close[0]}`?" if close else ""
            return Invalid(f"There is no check or group `{target}`.{suggestion} `/mesh list` shows every check."
                           + _known("Groups", _groups(targets)))
        if target not in chosen:
            chosen.append(target)
    return CheckRequest(tuple(chosen), cluster, deep)


def _digest(text: str, clusters: Collection[str]) -> Request:
    words = text.split()
    if not words:
        return Invalid("Digests:\n" + DIGEST_USAGE)
    sub, args = words[0].lower(), words[1:]
    if sub == "list" and not args:
        return DigestListRequest()
    if sub == "now" and len(args) <= 1:
        unknown = _unknown_clusters(args, clusters)
        return unknown or DigestNowRequest(args[0] if args else None)
    if sub == "now":
        return Invalid("Name at most one cluster, e.g. `/mesh digest now prod`." + _known("Clusters", clusters))
    if sub == "subscribe":
        quoted = QUOTED.match(text.strip()[len(words[0]):])
        if not quoted or not quoted["cron"].strip():
            return Invalid('Put the schedule in quotes as a cron line, e.g. `/mesh digest subscribe "0 9 * * 1-5" '
                           'prod` (minute hour day-of-month month day-of-week, UTC).')
        named = list(dict.fromkeys(quoted["rest"].replace(",", " ").split()))
        unknown = _unknown_clusters(named, clusters)
        return unknown or DigestSubscribeRequest(" ".join(quoted["cron"].split()), tuple(named))
    if sub == "unsubscribe" and len(args) == 1:
        return DigestUnsubscribeRequest(args[0])
    if sub == "unsubscribe":
        return Invalid("Name one digest, e.g. `/mesh digest unsubscribe s3`; `/mesh digest list` shows their ids.")
    if sub in DIGEST_VERBS:
        return Invalid(f"`digest {sub}` takes no arguments.\n\n{DIGEST_USAGE}")
    close = difflib.get_close_matches(sub, DIGEST_VERBS, n=1, cutoff=0.6)
    hint = f" Did you mean `/mesh digest {' '.join([close[0], *args])}`?" if close else ""
    return Invalid(f"I don't know `digest {sub}`.{hint}\n\n{DIGEST_USAGE}")


def _unknown_clusters(names: list[str], clusters: Collection[str]) -> Invalid | None:
    for name in names:
        if name not in clusters:
            close = difflib.get_close_matches(name, list(clusters), n=1, cutoff=0.5)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            return Invalid(f"There is no cluster `{name}`.{hint}" + _known("Clusters", clusters))
    return None


def _hint(name: str, names: Collection[str], command: str) -> str:
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.5)
    return f" Did you mean `/mesh {command} on {close[0]}`?" if close else ""


def _groups(targets: Collection[str]) -> list[str]:
    return sorted(t for t in targets if "." not in t)  # check ids are group.name


def _known(label: str, names: Collection[str]) -> str:
    return f"\n{label}: " + (", ".join(f"`{n}`" for n in sorted(names)) if names else "none configured")


@dataclass(frozen=True)
class Origin:
    """Who asked, from where: the part of a request that is not its text."""

    source: str  # command, click, mention, incident
    user: str  # Slack ids; names only when Slack sends them (slash commands)
    channel: str
    user_name: str = ""
    channel_name: str = ""
    team: str = ""
    thread_ts: str | None = None  # answer in this thread (mentions)

    def to_json(self) -> dict:
        return dict(self.__dict__)
