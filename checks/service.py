"""Connect to a configured cluster and run checks: the one entry point the CLI and the worker share."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from checks.cluster import Cluster
from checks.errors import AccessError
from checks.model import Check, Istio, Result, Status
from checks.runner import Report, run
from checks.suppression import Suppression, apply


def run_on_cluster(name: str, cluster_config, checks: Sequence[Check], checks_config, *,
                   all_pods: bool = False, focus_namespace: str | None = None,
                   suppressions: Sequence[Suppression] = ()) -> Report:
    """Run checks; a cluster that cannot even be configured raises ConfigError. ``focus_namespace`` keeps the
    configuration findings about that namespace only (cluster-scoped objects' findings are kept too); findings
    that ``suppressions`` match stay in the report as `skip` (checks.suppression)."""
    cluster = Cluster.connect(
        name, cluster_config.kubeconfig, cluster_config.context,
        request_timeout=checks_config.request_timeout_seconds, concurrency=checks_config.concurrency,
        endpoints=cluster_config.endpoints,
    )
    settings = dataclasses.replace(checks_config.settings(), focus_namespace=focus_namespace)
    report = run(cluster, checks, namespace=cluster_config.istio_namespace, settings=settings,
                 budget=checks_config.budget_seconds, concurrency=checks_config.concurrency, all_pods=all_pods)
    if not suppressions:
        return report
    return dataclasses.replace(report, results=apply(report.results, suppressions, time.time()))


def unreachable_report(name: str, checks: Sequence[Check], error: AccessError, namespace: str) -> Report:
    """Every check as ``error`` with the cause, for a cluster that could not be reached at all."""
    results = [Result(c.id, c.title, c.section, Status.ERROR, f"could not tell: {error}") for c in checks]
    return Report(name, Istio(namespace, None, None), results, 0, unreachable=str(error))
