"""istioctl analyze's own test cases (kubesim/data/istio-analyzers-1.28.10/) as simulated clusters.

A case is its input files on top of ``_analyzers-reference.yaml`` (the resources istioctl's tests add to every
case). Its Deployments are scaled to zero, as the test's snapshot holds their specs and no pods of theirs; a mesh
config file becomes ConfigMap istio-system/istio, where a live cluster keeps it.
"""

from __future__ import annotations

from kubesim.scenario import DATA, Scenario, load
from kubesim.store import load_manifest

TESTDATA = "istio-analyzers-1.28.10/testdata"


def case_scenario(files: list[str], mesh_config: str | None = None) -> Scenario:
    paths = [f"{TESTDATA}/{f}" for f in files]
    workloads = {}
    for path in paths:
        for obj in load_manifest((DATA / path).read_text()):
            if obj.get("kind") == "Deployment":
                meta = obj.get("metadata") or {}
                workloads[f"{meta.get('namespace') or 'default'}/{meta['name']}"] = {"replicas": 0}
    overrides: dict = {"files": paths, "workloads": workloads}
    if mesh_config:
        overrides["objects"] = [{"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "istio", "namespace": "istio-system"},
                                 "data": {"mesh": (DATA / TESTDATA / mesh_config).read_text()}}]
    return load("_analyzers-reference", overrides)


# Which meshbot check answers each upstream analyzer, and the codes compared for it. An analyzer missing here has
# no meshbot counterpart; codes it reports that meshbot does not are listed apart (not compared, not counted).
COVERED = {
    "gateway.IngressGatewayPortAnalyzer": ("config.gateway-workloads", ("IST0101", "IST0162")),
    "gateway.ConflictingGatewayAnalyzer": ("config.gateway-conflicts", ("IST0145",)),
    "gateway.CertificateAnalyzer": ("config.gateway-certificates", ("IST0138",)),
    "injection.Analyzer": ("config.injection", ("IST0103", "IST0123")),
    "injection.ImageAnalyzer": ("config.proxy-image", ("IST0158",)),
    "service.PortNameAnalyzer": ("config.service-port-names", ("IST0118", "IST0150")),
    "sidecar.SelectorAnalyzer": ("config.sidecar-selectors", ("IST0101", "IST0110", "IST0111", "IST0167")),
    "virtualservice.ConflictingMeshGatewayHostsAnalyzer": ("config.vs-mesh-hosts", ("IST0109",)),
    "virtualservice.DestinationHostAnalyzer": ("config.vs-destinations", ("IST0101", "IST0112", "IST0140")),
    "virtualservice.DestinationRuleAnalyzer": ("config.vs-destination-subsets", ("IST0101",)),
    "virtualservice.GatewayAnalyzer": ("config.vs-gateways", ("IST0101", "IST0132", "IST0165")),
    "authz.AuthorizationPoliciesAnalyzer": ("config.authz-targets", ("IST0101", "IST0127")),
    "destinationrule.CaCertificateAnalyzer": ("config.dr-ca-certificates", ("IST0128", "IST0129")),
    "destinationrule.PodNotSelectedAnalyzer": ("config.dr-subset-pods", ("IST0173", "IST0174")),
    "webhook.Analyzer": ("config.injection-webhooks", ("IST0139",)),
    "envoyfilter.EnvoyPatchAnalyzer": ("config.envoy-filters", ("IST0151", "IST0152", "IST0153", "IST0154",
                                                                "IST0155")),
    "conditions.ConditionAnalyzer": ("config.status-conditions", ("IST0171",)),
}
# istioctl drops identical messages (SortedDedupedCopy); these codes' messages carry no argument, so all of one
# object's are identical and count once. meshbot reports each patch or port on its own.
WITHOUT_ARGUMENTS = {"IST0150", "IST0151", "IST0152", "IST0153", "IST0154", "IST0155"}
# The upstream analyzers meshbot has no counterpart for, and why.
NOT_COVERED = {
    "gateway.SecretAnalyzer": "reads Secrets (gateway credentials), which meshbot never reads",
    "multicluster.MeshNetworksAnalyzer": "reads Secrets (remote cluster credentials)",
    "annotations.K8sAnalyzer": "not implemented (annotation names and values)",
    "maturity.AlphaAnalyzer": "not implemented (istioctl x precheck only, not in analyze's All())",
    "deprecation.FieldAnalyzer": "not implemented",
    "externalcontrolplane.ExternalControlPlaneAnalyzer": "not implemented",
    "deployment.ServiceAssociationAnalyzer": "not implemented",
    "deployment.ApplicationUIDAnalyzer": "not implemented",
    "authn.BlockedCIDRsAnalyzer": "not implemented",
    "virtualservice.JWTClaimRouteAnalyzer": "not implemented",
    "injection.ImageAutoAnalyzer": "not implemented",
    "serviceentry.ProtocolAddressesAnalyzer": "not implemented",
    "telemetry.ProviderAnalyzer": "not implemented",
    "telemetry.SelectorAnalyzer": "not implemented",
    "telemetry.DefaultSelectorAnalyzer": "not implemented",
    "telemetry.LightstepAnalyzer": "not implemented",
    "k8sgateway.SelectorAnalyzer": "not implemented",
    "schemaValidation.CollectionValidationAnalyzer(collections.VirtualService)":
        "not implemented: duplicate and overlapping matches (IST0130, IST0131); meshbot's config.schema (IST0106) "
        "checks required fields and values instead",
}
CLUSTER_SCOPED = {"Namespace", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "Node"}


def live_name(message: str) -> str:
    """A table origin as a live cluster names it: an object the input YAML left without namespace is in default."""
    code, kind, name = message.split(" ", 2)
    if "/" not in name and kind not in CLUSTER_SCOPED:
        name = f"default/{name}"
    return f"{code} {kind} {name}"


def compared(case: dict) -> tuple[list[str], list[str]]:
    """(expected messages meshbot is compared on, expected messages of codes meshbot does not implement)."""
    _, codes = COVERED[case["analyzer"]]
    expected = deduplicated([live_name(m) for m in case["expected"]])
    return [m for m in expected if m.split(" ")[0] in codes], [m for m in expected if m.split(" ")[0] not in codes]


def found_messages(report: dict, analyzer: str) -> list[str]:
    """The messages meshbot's answering check reported, as "CODE Kind ns/name"."""
    check, codes = COVERED[analyzer]
    found = [f"{r['code']} {r['objects'][0]}" for r in report["results"]
             if r["check"] == check and r.get("code") in codes]
    return sorted(deduplicated(found))


def deduplicated(messages: list[str]) -> list[str]:
    seen, out = set(), []
    for m in messages:
        if m.split(" ")[0] in WITHOUT_ARGUMENTS:
            if m in seen:
                continue
            seen.add(m)
        out.append(m)
    return out
