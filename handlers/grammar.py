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

VERBS = ("help", "check", "clusters", "list", "ask", "digest", "suppress", "unsuppress", "suppressions")
USAGE = (
    "`/mesh check TARGET [deep] [on CLUSTER]` runs checks (TARGET: a group such as `mixer`, `all`, or a check id;"
    " `deep` reads every sidecar's log, not a sample)\n"
    "`/mesh check config [NAMESPACE] [on CLUSTER]` analyses the mesh configuration as istioctl analyze does, "
    "in one namespace if you name it\n"
    "`/mesh suppress CODE Kind namespace/name [for 30d] [on CLUSTER] [because REASON]` stops reporting a "
    "configuration finding (it still shows as suppressed); `/mesh unsuppress CODE Kind namespace/name [on CLUSTER]`"
    " reports it again; `/mesh suppressions [CLUSTER]` lists them\n"
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
CODE = re.compile(r"^(IST|MB)\d{4}$")
KIND = re.compile(r"^[A-Z][A-Za-z]+$")
NAME = re.compile(r"^([a-z0-9][a-z0-9.-]*/)?[A-Za-z0-9][A-Za-z0-9._~-]*$")
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DURATION = re.compile(r"^(\d{1,3})([hdw])$")
UNIT_SECONDS = {"h": 3600, "d": 86400, "w": 7 * 86400}
SUPPRESS_DEFAULT = 30 * 86400  # a suppression made in Slack always ends; 30 days unless `for` says otherwise
SUPPRESS_MOST = 365 * 86400
SUPPRESS_EXAMPLE = "`/mesh suppress IST0118 Service default/legacy for 30d because server-first protocol`"
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
    namespace: str | None = None  # configuration findings about this namespace only

    @property
    def text(self) -> str:
        """The canonical command; buttons carry it so a click parses back into this request."""
        return ("check " + " ".join(self.targets) + (f" {self.namespace}" if self.namespace else "")
                + (" deep" if self.deep else "") + (f" on {self.cluster}" if self.cluster else ""))


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
class SuppressRequest:
    code: str  # "IST0101"
    object: str  # "VirtualService default/reviews"
    cluster: str | None = None
    seconds: int = SUPPRESS_DEFAULT
    reason: str = ""

    @property
    def text(self) -> str:
        hours = self.seconds // 3600
        length = f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"
        return (f"suppress {self.code} {self.object} for {length}" + (f" on {self.cluster}" if self.cluster else "")
                + (f" because {self.reason}" if self.reason else ""))


@dataclass(frozen=True)
class UnsuppressRequest:
    code: str
    object: str
    cluster: str | None = None

    @property
    def text(self) -> str:
        return f"unsuppress {self.code} {self.object}" + (f" on {self.cluster}" if self.cluster else "")


@dataclass(frozen=True)
class SuppressionsRequest:
    cluster: str | None = None  # None: every cluster the asker may use here


@dataclass(frozen=True)
class Invalid:
    """Text that is not a command; ``message`` is the friendly reply, nothing runs."""

    message: str


DigestRequest = DigestListRequest | DigestNowRequest | DigestSubscribeRequest | DigestUnsubscribeRequest
SuppressionRequest = SuppressRequest | UnsuppressRequest | SuppressionsRequest
Request = (HelpRequest | CheckRequest | ClustersRequest | ListRequest | AskRequest | DigestRequest | SuppressionRequest
           | Invalid)


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
    if verb in ("suppress", "unsuppress"):
        return _suppress(verb, args, clusters)
    if verb == "suppressions" and len(args) <= 1:
        return _unknown_clusters(args, clusters) or SuppressionsRequest(args[0] if args else None)
    if verb in VERBS:  # clusters/list/suppressions with extra words
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
    namespace = None
    if len(args) > 1 and args[-1].lower() not in targets and NAMESPACE.match(args[-1]) and all(
            a.lower() == "config" or a.lower().startswith("config.") for a in args[:-1]):
        namespace, args = args[-1], args[:-1]  # `/mesh check config NAMESPACE`
    chosen = []
    for target in (a.lower() for a in args):
        if target not in targets:
            close = difflib.get_close_matches(target, list(targets), n=1, cutoff=0.5)
            suggestion = f" Did you mean `{close[0]}`?" if close else ""
            return Invalid(f"There is no check or group `{target}`.{suggestion} `/mesh list` shows every check."
                           + _known("Groups", _groups(targets)))
        if target not in chosen:
            chosen.append(target)
    return CheckRequest(tuple(chosen), cluster, deep, namespace)


def _suppress(verb: str, args: list[str], clusters: Collection[str]) -> Request:
    """`suppress CODE Kind ns/name [for 30d] [on CLUSTER] [because REASON…]`, `unsuppress CODE Kind ns/name [on
    CLUSTER]`."""
    example = SUPPRESS_EXAMPLE if verb == "suppress" else "`/mesh unsuppress IST0118 Service default/legacy`"
    if len(args) < 3 or not CODE.match(args[0].upper()) or not KIND.match(args[1]) or not NAME.match(args[2]):
        return Invalid(f"Name the finding by its code and object as the finding shows them, e.g. {example}.")
    code, obj, rest = args[0].upper(), f"{args[1]} {args[2]}", args[3:]
    cluster, seconds, reason = None, SUPPRESS_DEFAULT, ""
    while rest:
        word = rest.pop(0).lower()
        if word == "because" and verb == "suppress" and rest:
            reason, rest = " ".join(rest), []
        elif word == "for" and verb == "suppress" and rest and (m := DURATION.match(rest[0].lower())):
            seconds = int(m.group(1)) * UNIT_SECONDS[m.group(2)]
            rest.pop(0)
            if not 0 < seconds <= SUPPRESS_MOST:
                return Invalid("A suppression lasts from 1 hour to 365 days, e.g. `for 12h`, `for 30d`, `for 8w`.")
        elif word == "on" and rest:
            cluster = rest.pop(0)
            if unknown := _unknown_clusters([cluster], clusters):
                return unknown
        else:
            return Invalid(f"I don't understand `{word}` there. For example {example}.")
    if verb == "unsuppress":
        return UnsuppressRequest(code, obj, cluster)
    return SuppressRequest(code, obj, cluster, seconds, reason)


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
