"""Configuration analysis of the live cluster, in the shape of `istioctl analyze`.

An analyzer is a pure function from a snapshot to findings. It declares the tables it ``needs`` (when one is
not served, the analyzer is skipped with the reason; when one cannot be read, it errors with the cause) and
those it only ``reads`` when present, and the message codes it may report (checks.analyzers.catalogue). Each
analyzer is one check of the ``config`` group; each finding is one result of it, naming the object at fault as
"Kind namespace/name", the field, what it points to, the istioctl analyze code and a fix with real values. An
analyzer with no finding gives one ``pass`` result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from checks.analyzers.catalogue import MESSAGES, Level, guide_url, reference_url
from checks.analyzers.snapshot import Index
from checks.detect import ISTIOD
from checks.errors import NotInstalled
from checks.model import Check, Context, InputUnavailable, Istio, Outcome, Status, passed, skipped

VOLATILE = frozenset({"count", "pods", "hint", "others", "message", "effect", "labels"})  # change, same finding
LEVEL_STATUS = {Level.ERROR: Status.FAIL, Level.WARNING: Status.WARN, Level.INFO: Status.WARN}
MAX_FINDINGS = 200  # per analyzer and run: beyond this one result says how many more there are
CODES: dict[str, tuple[str, ...]] = {}  # analyzer (check id) → the message codes it may report


@dataclass(frozen=True)
class Finding:
    """One message about one object. ``refs`` are the objects it points to ("Kind ns/name"), missing or not."""

    kind: str
    namespace: str
    name: str
    code: str
    values: dict = field(default_factory=dict)
    fix: str = ""
    refs: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()

    @property
    def object(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    @property
    def scope(self) -> str:
        """The namespace a finding belongs to (a Namespace's own name; "" for other cluster-scoped objects)."""
        return self.name if self.kind == "Namespace" else self.namespace


class Snapshot:
    """What an analyzer sees: its tables, the mesh config and the detected Istio."""

    def __init__(self, ctx: Context, optional: frozenset):
        self._ctx, self._optional = ctx, optional
        self.istio: Istio = ctx.istio

    def __getitem__(self, key) -> Index:
        if key in self._optional:
            value = self._ctx.maybe(key)
            return value if value is not None else Index(getattr(key, "kind", ""), [])
        return self._ctx.get(key)

    def value(self, key, default=None):
        return self._ctx.maybe(key, default)


def analyzer(*, id: str, title: str, section: str, codes: tuple[str, ...], needs: Callable[[Istio], tuple],
             reads: Callable[[Istio], tuple] = lambda istio: (), signatures: tuple[str, ...] = ()
             ) -> Callable[[Callable[[Snapshot], Iterable[Finding]]], Check]:
    """Declare an analyzer; its docstring is its help text."""
    unknown = set(codes) - set(MESSAGES)
    assert not unknown, f"{id}: codes not in the catalogue: {unknown}"
    CODES[id] = tuple(codes)

    def wrap(fn: Callable[[Snapshot], Iterable[Finding]]) -> Check:
        def run(ctx: Context):
            required = needs(ctx.istio)
            for key in required:  # an input absent from the cluster skips, one that failed errors
                try:
                    ctx.get(key)
                except InputUnavailable as exc:
                    if isinstance(exc.cause, NotInstalled):
                        return skipped(f"{key} is not served by this cluster, so there is nothing to analyse "
                                       f"({', '.join(codes)})")
                    raise
            optional = frozenset(reads(ctx.istio))
            for key in optional:  # a kind the cluster does not serve reads as empty; one we may not read errors
                try:
                    ctx.get(key)
                except InputUnavailable as exc:
                    if not isinstance(exc.cause, NotInstalled):
                        raise
            snap = Snapshot(ctx, optional)
            found = sorted(fn(snap), key=lambda f: (f.kind, f.namespace, f.name, f.code, str(f.values)))
            focus = ctx.settings.focus_namespace
            if focus:  # as istioctl analyze -n: cluster-scoped objects' findings stay
                found = [f for f in found if f.scope in (focus, "")]
            counted = ", ".join(f"{len(ctx.get(k))} {k.kind}(s)" for k in required if hasattr(k, "kind"))
            if not found:
                where = f" in namespace {focus}" if focus else ""
                return passed(f"no finding{where} ({', '.join(codes)}): analysed {counted}")
            outcomes = [outcome(f, section) for f in found[:MAX_FINDINGS]]
            if len(found) > MAX_FINDINGS:
                outcomes.append(Outcome(Status.WARN, f"{len(found) - MAX_FINDINGS} more findings not listed "
                                        f"(at most {MAX_FINDINGS} per analyzer)", (counted,), "istioctl analyze -A"))
            return outcomes

        return Check(id, title, section, ISTIOD, lambda istio: tuple(needs(istio)) + tuple(reads(istio)), run,
                     " ".join((fn.__doc__ or "").split()), tuple(signatures))

    return wrap


def outcome(f: Finding, section: str) -> Outcome:
    message = MESSAGES[f.code]
    text = message.text({"hint": "", **f.values})
    evidence = list(f.evidence)
    evidence += [f"points to {r}" for r in f.refs]
    url = reference_url(f.code)
    evidence.append(f"istioctl analyze reports this as {f.code} {message.name} ({message.level}): {url}" if url
                    else f"meshbot rule {f.code} {message.name} ({message.level}); no istioctl analyze code")
    own = message.section or section
    identity = "|".join(f"{k}={v}" for k, v in sorted(f.values.items()) if k not in VOLATILE)
    return Outcome(LEVEL_STATUS[message.level], f"{f.code} {f.object}: {text}", tuple(evidence), f.fix,
                   code=f.code, objects=(f.object, *[r for r in f.refs if r != f.object]), url=guide_url(own),
                   section=own, identity=identity)
