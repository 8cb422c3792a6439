"""Plain-text rendering of check results, for terminals and Slack's text fallback."""

from __future__ import annotations

from checks.model import Result, Status
from checks.runner import Report


def counts_line(report: Report) -> str:
    parts = [f"{n} {status}" for status, n in report.counts.items() if n]
    return ", ".join(parts) or "no checks"


def headline(report: Report) -> str:
    istio = report.istio.version or "no Istio found"
    return f"{report.cluster} (Istio {istio}): {counts_line(report)} in {report.duration_ms / 1000:.1f}s"


def result_text(result: Result, *, verbose: bool = True) -> str:
    lines = [f"{result.status.value.upper():5} {result.check}: {result.summary}"]
    if verbose and result.status not in (Status.PASS, Status.SKIP):
        lines += [f"      | {line}" for line in result.evidence]
        if result.fix:
            lines.append("      fix:")
            lines += [f"        {line}" for line in result.fix.splitlines()]
        lines.append(f"      guide: #{result.section}")
    return "\n".join(lines)


def report_text(report: Report) -> str:
    return "\n".join([headline(report), ""] + [result_text(r) for r in report.results])
