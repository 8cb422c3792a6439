"""The check model: metadata, a pure function over gathered inputs, a result."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from checks.errors import BadPayload, ClusterError


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str]  # case-insensitive
    sent_at: float  # the bot's clock, before and after: bounds the server's Date
    received_at: float

    def json(self, what: str) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise BadPayload(f"{what} did not answer JSON: {exc}") from None

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def server_time(self) -> float | None:
        date = self.headers.get("Date")
        try:
            return parsedate_to_datetime(date).timestamp() if date else None
        except (TypeError, ValueError):
            return None


class Status(enum.StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"  # could not tell: the summary says why
    SKIP = "skip"  # does not apply here: the summary says why


class Generation(enum.StrEnum):
    """Istio control-plane layouts that change what a check must look at."""

    MIXER_05 = "0.5-0.7"  # one istio-mixer, istio-ca
    MIXER_08 = "0.8"  # istio-policy + istio-telemetry, istio-citadel
    MIXER_1X = "1.0-1.4"  # 1.x with Mixer
    ISTIOD = "istiod"  # 1.5+


MIXER_ERA = frozenset({Generation.MIXER_05, Generation.MIXER_08, Generation.MIXER_1X})
ALL_GENERATIONS = frozenset(Generation)


@dataclass(frozen=True)
class Istio:
    """What the control plane told us about itself."""

    namespace: str
    version: str | None
    generation: Generation | None
    deployments: Mapping[str, dict] = field(default_factory=dict, compare=False, repr=False)

    @property
    def version_tuple(self) -> tuple[int, ...]:
        parts = []
        for piece in (self.version or "").split("."):
            digits = "".join(ch for ch in piece if ch.isdigit())
            if not digits:
                break
            parts.append(int(digits))
        return tuple(parts)

    def at_least(self, *version: int) -> bool:
        return self.version_tuple >= version


@dataclass(frozen=True)
class Outcome:
    """What a check concluded; the runner adds the check's identity.

    A check may conclude several outcomes (one per finding, checks.analyzers); those carry the message
    ``code``, the ``objects`` they are about ("Kind namespace/name", the one at fault first), the guide
    ``url`` and, when it differs from the check's, the ``section`` the finding belongs to.
    """

    status: Status
    summary: str
    evidence: tuple[str, ...] = ()
    fix: str = ""
    code: str = ""
    objects: tuple[str, ...] = ()
    url: str = ""
    section: str = ""
    identity: str = ""  # tells one finding from the others of its code and object, across runs


def passed(summary: str, *evidence: str) -> Outcome:
    return Outcome(Status.PASS, summary, evidence)


def warned(summary: str, evidence: list[str] | tuple[str, ...] = (), fix: str = "") -> Outcome:
    return Outcome(Status.WARN, summary, tuple(evidence), fix)


def failed(summary: str, evidence: list[str] | tuple[str, ...] = (), fix: str = "") -> Outcome:
    return Outcome(Status.FAIL, summary, tuple(evidence), fix)


def skipped(reason: str) -> Outcome:
    return Outcome(Status.SKIP, reason)


@dataclass(frozen=True)
class Result:
    check: str
    title: str
    section: str
    status: Status
    summary: str
    evidence: tuple[str, ...] = ()
    fix: str = ""
    code: str = ""  # the optional fields of the JSON contract: present only when set
    objects: tuple[str, ...] = ()
    url: str = ""
    identity: str = field(default="", compare=False)  # not in the JSON: see key

    @property
    def key(self) -> str:
        """Stable across runs for the same finding, whatever its summary says today (counts, suppression): the
        check id, or for one of several findings of a check its code, object and identity (the thread reply and
        the digest state are keyed by it)."""
        if not self.code:
            return self.check
        digest = hashlib.sha1(self.identity.encode()).hexdigest()[:8]
        return f"{self.check}|{self.code}|{self.objects[0] if self.objects else ''}|{digest}"

    def to_json(self) -> dict[str, Any]:
        out = {
            "check": self.check,
            "title": self.title,
            "section": self.section,
            "status": self.status.value,
            "summary": self.summary,
            "evidence": list(self.evidence),
            "fix": self.fix,
        }
        if self.code:
            out["code"] = self.code
        if self.objects:
            out["objects"] = list(self.objects)
        if self.url:
            out["url"] = self.url
        return out


class InputUnavailable(Exception):
    """Raised inside a check when an input it needs could not be fetched."""

    def __init__(self, cause: ClusterError):
        super().__init__(str(cause))
        self.cause = cause


class Context:
    """What a check sees: the detected Istio and the inputs it declared."""

    def __init__(self, istio: Istio, settings: Settings, values: Mapping[Any, Any], declared: frozenset):
        self.istio = istio
        self.settings = settings
        self._values = values
        self._declared = declared

    def get(self, key: Any) -> Any:
        if key not in self._declared:
            raise KeyError(f"input {key!r} was not declared by this check")
        value = self._values[key]
        if isinstance(value, ClusterError):
            raise InputUnavailable(value)
        return value

    def maybe(self, key: Any, default: Any = None) -> Any:
        """Like get, but an input that could not be fetched gives ``default``."""
        try:
            return self.get(key)
        except InputUnavailable:
            return default


@dataclass(frozen=True)
class Settings:
    """Per-run knobs a check may read; all have production defaults."""

    clock_skew_seconds: float = 30.0
    refresh_delay_seconds: float = 10.0  # shorter is the polling the high-CPU section means (1s defaults)
    hot_sidecar_millicores: float = 100.0  # a sidecar above this and above its app's CPU is hot
    focus_namespace: str | None = None  # configuration findings about objects in this namespace only


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    section: str
    generations: frozenset[Generation]
    inputs: Callable[[Istio], tuple]
    run: Callable[[Context], Outcome | list[Outcome]]  # several: one per finding (checks.analyzers)
    description: str = ""
    # What the problem looks like where people see it: log lines, metric names, error strings, ports, object
    # kinds. Answers use it as the symptom vocabulary of the check's guide section (knowledge.index).
    signatures: tuple[str, ...] = ()
    # Subsections a result names instead of ``section`` when its evidence points at one cause, each with the
    # signatures of that cause: ((section id, (signature, ...)), ...).
    subsections: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]


def check(*, id: str, title: str, section: str, generations=ALL_GENERATIONS,
          inputs: Callable[[Istio], tuple] = lambda istio: (),
          signatures: tuple[str, ...] = (), subsections: dict[str, tuple[str, ...]] | None = None
          ) -> Callable[[Callable[[Context], Outcome]], Check]:
    """Declare a check; its docstring is its help text."""

    def wrap(fn: Callable[[Context], Outcome]) -> Check:
        return Check(id, title, section, frozenset(generations), inputs, fn, " ".join((fn.__doc__ or "").split()),
                     tuple(signatures), tuple((k, tuple(v)) for k, v in (subsections or {}).items()))

    return wrap
