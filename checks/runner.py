"""Run checks on one cluster: detect Istio, gather inputs once, run each check."""

from __future__ import annotations

import asyncio
import difflib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from checks import istio as istio_mod
from checks.catalog import ALL_CHECKS, GROUPS
from checks.cluster import DEFAULT_CONCURRENCY, Cluster
from checks.detect import json_view
from checks.errors import AccessError, ClusterError
from checks.gather import Gatherer
from checks.model import (
    ALL_GENERATIONS,
    Check,
    Context,
    Generation,
    InputUnavailable,
    Istio,
    Outcome,
    Result,
    Settings,
    Status,
    skipped,
)
from checks.successors import superseded

DEFAULT_BUDGET_SECONDS = 20.0


class UnknownTarget(ValueError):
    def __init__(self, target: str):
        names = sorted(GROUPS) + ["all"] + [c.id for c in ALL_CHECKS]
        close = [n for n in names if n.startswith(target) and "." in target] or difflib.get_close_matches(
            target, names, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]}?)" if close else ""
        super().__init__(f"unknown check or group '{target}'{hint}; see `meshbot checks`")
        self.target = target
        self.suggestion = close[0] if close else None


def select(targets: Iterable[str]) -> list[Check]:
    """Checks named by groups or ids, in catalogue order."""
    wanted: set[str] = set()
    for target in targets:
        target = target.strip().lower()
        if target == "all":
            wanted.update(c.id for c in ALL_CHECKS)
        elif target in GROUPS:
            wanted.update(c.id for c in ALL_CHECKS if c.group == target)
        elif any(c.id == target for c in ALL_CHECKS):
            wanted.add(target)
        else:
            raise UnknownTarget(target)
    return [c for c in ALL_CHECKS if c.id in wanted]


@dataclass
class Report:
    cluster: str
    istio: Istio
    results: list[Result]
    duration_ms: int
    requests: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per check id; not part of the JSON
    unreachable: str | None = None  # why the cluster could not be reached at all, when it could not
    counts: dict[str, int] = field(init=False)

    def __post_init__(self):
        self.counts = {s.value: sum(r.status is s for r in self.results) for s in Status}

    @property
    def ok(self) -> bool:
        return not any(r.status in (Status.FAIL, Status.ERROR) for r in self.results)

    def to_json(self) -> dict:
        generation = self.istio.generation.value if self.istio.generation else None
        istio = {"version": self.istio.version, "generation": generation}
        if self.istio.generation is Generation.ISTIOD:  # revisions: several control planes in a canary upgrade
            istio.update(json_view(self.istio))
        return {
            "cluster": self.cluster,
            "istio": istio,
            "results": [r.to_json() for r in self.results],
            "duration_ms": self.duration_ms,
        }


def run(cluster: Cluster, checks: Sequence[Check], *, namespace: str = "istio-system",
        settings: Settings = Settings(), budget: float = DEFAULT_BUDGET_SECONDS,
        concurrency: int = DEFAULT_CONCURRENCY, all_pods: bool = False) -> Report:
    return asyncio.run(run_async(cluster, checks, namespace=namespace, settings=settings,
                                 budget=budget, concurrency=concurrency, all_pods=all_pods))


async def run_async(cluster: Cluster, checks: Sequence[Check], *, namespace: str = "istio-system",
                    settings: Settings = Settings(), budget: float = DEFAULT_BUDGET_SECONDS,
                    concurrency: int = DEFAULT_CONCURRENCY, all_pods: bool = False) -> Report:
    """``all_pods`` reads every sidecar's log instead of the pods the status points at plus a sample."""
    started = time.monotonic()
    gatherer = Gatherer(cluster, deadline=started + budget, concurrency=concurrency, all_pods=all_pods)
    try:
        detection_key = istio_mod.deployments_input(namespace)
        found = (await gatherer.gather([detection_key]))[detection_key]
        detection_error = found if isinstance(found, ClusterError) else None
        istio = istio_mod.detect(namespace, [] if detection_error else found)
        if istio.generation is None and not detection_error:  # istiod installed elsewhere (istio-control, ...)
            elsewhere = await istio_mod.find_istiod(gatherer)
            if elsewhere:
                detection_key = istio_mod.deployments_input(elsewhere)
                found = (await gatherer.gather([detection_key]))[detection_key]
                if not isinstance(found, ClusterError):
                    istio = istio_mod.detect(elsewhere, found)

        runnable = [c for c in checks if _skip_reason(c, istio, detection_error) is None]
        declared = {c.id: frozenset(c.inputs(istio)) | {detection_key} for c in runnable}
        values = await gatherer.gather(k for keys in declared.values() for k in keys)
        results, timings = [], {}
        for check in checks:
            reason = _skip_reason(check, istio, detection_error)
            if reason is not None:
                results.append(_result(check, reason))
                continue
            evaluated = time.monotonic()
            results += _run_one(check, Context(istio, settings, values, declared[check.id]))
            # how long until this check could answer: its slowest input, plus its own work
            ready = max((gatherer.finished.get(k, started) for k in declared[check.id]), default=started)
            timings[check.id] = ready - started + time.monotonic() - evaluated
        unreachable = str(detection_error) if isinstance(detection_error, AccessError) else None
        return Report(cluster.name, istio, results, int((time.monotonic() - started) * 1000), gatherer.requests,
                      timings, unreachable)
    finally:
        await cluster.aclose()


def _skip_reason(check: Check, istio: Istio, detection_error: ClusterError | None) -> Outcome | None:
    """Why ``check`` cannot run on this control plane, or None when it can."""
    if detection_error is None and (successor := superseded(check.id, istio)) is not None:
        return successor
    if check.generations == ALL_GENERATIONS:
        return None
    if detection_error is not None:
        return Outcome(Status.ERROR, f"could not detect the Istio version: {detection_error}")
    if istio.generation is None:
        return skipped(f"no Istio control plane found in namespace {istio.namespace}")
    if istio.generation not in check.generations:
        applies = ", ".join(sorted(g.value for g in check.generations))
        return skipped(f"applies to Istio {applies}; this cluster runs {istio.version or istio.generation.value}")
    return None


def _result(check: Check, out: Outcome) -> Result:
    return Result(check.id, check.title, out.section or check.section, out.status, out.summary,
                  tuple(out.evidence), out.fix, out.code, tuple(out.objects), out.url, out.identity)


def _run_one(check: Check, context: Context) -> list[Result]:
    try:
        outcome = check.run(context)
        outcomes = outcome if isinstance(outcome, list) else [outcome]
        return [_result(check, o) for o in outcomes]
    except (InputUnavailable, ClusterError) as exc:  # a payload a check found damaged too
        return [_result(check, Outcome(Status.ERROR, f"could not tell: {exc}"))]
    except Exception as exc:  # a check's bug must not stop the others
        return [_result(check, Outcome(Status.ERROR, f"check {check.id} crashed: {type(exc).__name__}: {exc}"))]
