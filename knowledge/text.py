"""Words: cleaning chat messages, tokens, stems and domain synonyms.

Guides and questions go through the same `terms()` so that they meet in one
vocabulary.  Regexes here work on chat text and single words, never on guide
Markdown (that is markdown-it's job, in guide.py).
"""

from __future__ import annotations

import html
import re
from functools import cache, lru_cache

import snowballstemmer

# Slack's message markup: https://api.slack.com/reference/surfaces/formatting
_MENTION = re.compile(r"<[@#!][^>]*>")  # <@U123>, <#C1|chan>, <!here>, <!subteam^S1>
_LINK = re.compile(r"<((?:https?|mailto):[^>|]*)(?:\|([^>]*))?>")
_EMOJI = re.compile(r"(?<![\w:]):(?:[a-z0-9_+'-]*[a-z][a-z0-9_+'-]*|\+1|-1):(?![\w])")
# *bold*, _italic_, ~strike~ markers at a word's edge; inside a word (grpc_server_handled_total) they are text.
# Only paired markers are markup: a lone one (`fd_ != -1`, `a*b`) is text.
# A mention gone leaves a space after an opening marker (`_<!here> down_`): spaces there are allowed.
_EMPHASIS = re.compile(r"(?<![\w*_~])([*_~]+)[ \t]*(?=\S)([^\n]*?\S)\1(?![\w*_~])")


def clean_chat(text: str) -> str:
    """Slack markup out of a message, keeping what a person wrote: the one normaliser before ranking.

    Mentions and channel links go (they name people and places, not problems), a link keeps its label,
    emoji go, code spans and blocks keep their code, emphasis keeps its words, entities are decoded.
    """
    text = _MENTION.sub(" ", text)
    text = _LINK.sub(lambda m: m.group(2) or m.group(1), text)
    text = _EMPHASIS.sub(r"\2", text)  # first: `_:fire: down_` is an emoji once its markers are gone
    while True:  # emoji can sit back to back (`:wave::skin-tone-2:`)
        stripped = _EMOJI.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    text = text.replace("`", " ")
    return html.unescape(text)  # Slack sends &lt; &gt; &amp; (decoded last: a decoded < is text, not markup)


# A word, or a dotted version number such as 1.0 or 0.5.1.
_WORD = re.compile(r"\d+(?:\.\d+)+|[A-Za-z0-9_]+")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")  # AuthorizationPolicy, hostNetwork, HTTPRoute

STOPWORDS = frozenset(
    """a about above after again all also am an and any anyone anything are as
    at be because been before being below between both but by can cant could
    did didnt do does doesnt doing dont down during each even ever every few
    for from further get gets getting got had has have having he her here hers
    hi hey how i id if im in into is isnt it its itself ive just like ll me
    might more most my myself need no nor not now of off on once only or other
    our ours out over own please pls same she should so some still such than
    thank thanks that thats the their them then there these they this those
    through to too under until up us very via want was wasnt we were what whats
    when where which while who whom why will with won wont would you your
    yours yet one bit lot lots really seem seems seeing see aren couldn didn doesn
    don hasn haven isn shouldn wasn weren wouldn actually anyway maybe somehow
    basically literally guys folks re ve""".split()  # re, ve: what is left of we're, we've
)


@cache
def stem(word: str) -> str:
    """Snowball's English stemmer (policies, policy: polici), the same on both sides; words with digits kept."""
    if len(word) <= 3 or not word.isalpha():
        return word
    return _STEMMER.stemWord(word)


_STEMMER = snowballstemmer.stemmer("english")


def words(text: str, camel: bool = True) -> list[str]:
    """Lowercased words, before stemming; identifiers (snake_case, CamelCase) split into their parts too."""
    out = []
    for raw in _WORD.findall(text):
        raw = raw.strip("_")
        w = raw.lower()
        if not w:
            continue
        out.append(w)
        if "_" in w:
            out.extend(p for p in w.split("_") if p)
        elif camel and raw.isalnum() and not raw.isupper() and not raw.islower() \
                and len(parts := _CAMEL.findall(raw)) > 1:
            out.extend(p.lower() for p in parts)
        elif "." in w and w.count(".") > 1:
            out.append(".".join(w.split(".")[:2]))  # 0.5.1 also counts as 0.5
    return out


# Shorthand people type in chat, read as the word the guides use.
ABBREVIATIONS = {
    "svc": "service",
    "svcs": "services",
    "ns": "namespace",
    "cfg": "config",
    "conf": "config",
    "k8s": "kubernetes",
    "certs": "certificates",
    "env": "environment",
    "prom": "prometheus",
    "authz": "authorization",
    "authn": "authentication",
    "gw": "gateway",
    "gws": "gateways",
    "dr": "destinationrule",
    "po": "pod",
    "deploy": "deployment",
    "sts": "statefulset",
    "cm": "configmap",
    "sa": "serviceaccount",
    "vs": "virtualservice",
}


COMMON = 3000  # how often a word occurs in pyspellchecker's English word counts to be common English


@cache
def _english():
    from spellchecker import SpellChecker  # imported here: it loads its word list (0.1 s)

    return SpellChecker(distance=1).word_frequency


def common_word(word: str) -> bool:
    """A common English word (never taken for a misspelling of a guide's word)."""
    return _english()[word] >= COMMON


CHAT = 300000  # counts from which a word is one of the commonest English words


def chat_word(word: str) -> bool:
    """One of the commonest English words ("keep", "still", "going"): it asks little even where a guide
    happens to use it."""
    return _english()[word] >= CHAT


ENGLISH = 500  # counts from which a word is English (a rarer one than COMMON)


def english_word(word: str) -> bool:
    """An English word, however rare (a service's name, "vanished"), not a product's name or a token."""
    return _english()[word] >= ENGLISH


def terms(text: str) -> list[str]:
    """Index terms of a text: words without stopwords, stemmed."""
    return list(_terms(text))


@lru_cache(maxsize=1 << 16)  # an index reads each line several times (fields, coverage, pairs)
def _terms(text: str) -> tuple[str, ...]:
    return tuple(stem(ABBREVIATIONS.get(w, w)) for w in words(text) if len(w) > 1 and w not in STOPWORDS)


# Words people use for the things the guides name differently.  Each key
# (a stem) adds its values at a lower weight; keep this list about the domain,
# not about particular questions.
_SYNONYM_GROUPS: dict[str, str] = {
    "dashboard panel graph chart": "grafana",
    "span tracing jaeger": "trace zipkin",
    "restart die dead crashloop crashloopbackoff oomkill": "crash",
    "spike burst perf loadtest benchmark peak": "load",
    "disconnect reset drop dropp": "connection lose",
    "clock drift skew timestamp": "time date",
    "ntp chrony timesync": "time synchron",
    "debugger backtrace": "gdb",
    "sniff capture packet pcap wireshark": "tcpdump",
    "descriptor fd": "file ulimit",
    "426": "http 1.0",
    "istiod discovery": "pilot",
    "telemetry stat": "metric",
    "sidecar": "envoy proxy",
    "inject injection injector": "inject injection injector sidecar",
    "cert certificate": "cert certificate",
    "scrape target": "prometheus",
    "talk reach communicate": "connect connectivity",
    "empty blank nothing gone zero none": "missing empty",
    "xds cds eds lds rds": "proxy-config istioctl",
    "rbac 403 forbidden": "authorization deny",
    "401 unauthorized jwt": "authentication token",
    "ssl https": "tls",
    "mtls": "mutual tls",
    "autoscaler autoscaling": "scale",
    "macbook macos osx laptop workstation": "mac local",
    # Envoy's access-log response flags (the distinctive ones): a pasted log line names them
    "uh uf uo urx uc ut lh lr nc uaex dpe upe umsdr nr": "response flag envoy",
}
SYNONYMS: dict[str, tuple[str, ...]] = {}
for _keys, _values in _SYNONYM_GROUPS.items():
    for _key in _keys.split():
        _extra = tuple(t for v in _values.split() for t in terms(v) if t != stem(_key))
        SYNONYMS[stem(_key)] = SYNONYMS.get(stem(_key), ()) + _extra


# The guides answer problems.  A question that asks how to use a feature, with no sign of trouble in
# it, is a tutorial question, however many of the guides' words it shares ("how do I configure
# retries"); it is offered suggestions, never a confident answer.  Asking how to look into the mesh
# (dump, capture, attach a debugger) is troubleshooting, which the guides do answer.
_HOW_TO = re.compile(
    r"^\s*(?:how (?:do|can|should|would) (?:i|we|you|one)|how to|what(?:'s| is| are) the (?:best|recommended|"
    r"difference)|what is|what's new|can (?:i|we|you) use|is there a way|does \S+ support|best way)\b|\bwhich one\b"
    r"|\b(?:set up|setup|configure|enable|install|add an?|expose|difference between|recommended way|syntax)\b"
    r"|\bexample\b(?!\.)")  # asking for an example (not example.com)
_TROUBLE = frozenset(stem(w) for w in words(
    """error errors fail fails failed failing failure broken break breaks not no never nothing none cant
    cannot doesnt dont wont isnt arent didnt stuck hang hangs hung slow high empty missing
    blank zero rejected reject denied deny refused reset drop drops lost lose crash crashes restart timed
    restarts oom wrong unknown invalid expired mismatch ignored unexpected stopped stops issue issues
    problem problems trouble why debug troubleshoot diagnose check verify confirm whether inspect dump capture
    attach see
    show gdb tcpdump 503 502 504 404 403 401 426
    unavailable unreachable unhealthy down flaky intermittent"""))


# Headings that are themselves instructions (istio.io's upgrade notes: "Use the Telemetry API for…"):
# a how-to question is what they answer.
_INSTRUCTION = re.compile(r"^(?:use|using|configur(?:e|ing)|how|with)\b", re.I)


def answers_how_to(title: str) -> bool:
    return bool(_INSTRUCTION.match(title))


def asks_how_to(question: str) -> bool:
    """A how-to question with no word of trouble in it (see _HOW_TO)."""
    text = clean_chat(question).lower()
    return bool(_HOW_TO.search(text)) and not any(stem(w) in _TROUBLE for w in words(text))


# Other service meshes: a question about one of them is not about Istio's guides, whatever words it shares.
_OTHER_MESHES = frozenset({"linkerd", "consul", "kuma"})


def about_other_mesh(question: str) -> bool:
    return not _OTHER_MESHES.isdisjoint(words(clean_chat(question).lower()))
