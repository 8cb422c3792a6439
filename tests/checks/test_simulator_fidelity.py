"""The simulated API server is faithful enough for the real kubectl and the real kubernetes client."""

import json
import shutil
import subprocess

import pytest
from kubernetes import client, config

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (scripts/test installs it)")


def kubectl(kubeconfig, *args) -> str:
    done = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_kubectl
def test_kubectl_lists_pods_of_every_namespace_as_a_table(simulate):
    sim, kubeconfig = simulate("istio-0.5.1-healthy")
    out = kubectl(kubeconfig, "get", "pods", "-A")
    header = out.splitlines()[0].split()
    assert header == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    rows = [line.split() for line in out.splitlines()[1:]]
    names = {row[1].rsplit("-", 2)[0] for row in rows}
    assert {"istio-pilot", "istio-mixer", "productpage-v1", "kube-apiserver"} <= names | {
        row[1].rsplit("-", 1)[0] for row in rows}
    productpage = next(row for row in rows if row[1].startswith("productpage-v1-"))
    assert productpage[0] == "default" and productpage[2] == "2/2" and productpage[3] == "Running"


@needs_kubectl
def test_kubectl_reads_mixer_rules_served_from_the_release_crds(simulate):
    _, kubeconfig = simulate("istio-0.5.1-healthy")
    out = kubectl(kubeconfig, "get", "rules.config.istio.io", "-A")
    names = {line.split()[1] for line in out.splitlines()[1:]}
    assert {"promhttp", "promtcp", "stdio"} <= names
    assert json.loads(kubectl(kubeconfig, "get", "rules", "-n", "istio-system", "promhttp", "-o", "json"))[
        "spec"]["actions"][0]["handler"] == "handler.prometheus"


@needs_kubectl
def test_kubectl_get_raw_through_the_service_proxy(simulate):
    _, kubeconfig = simulate("istio-0.5.1-healthy")
    out = kubectl(kubeconfig, "get", "--raw", "/api/v1/namespaces/istio-system/services/istio-mixer:9093/proxy/metrics")
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="Report"' in out


@needs_kubectl
def test_kubectl_logs_of_a_sidecar(simulate):
    _, kubeconfig = simulate("istio-0.5.1-fd-crash")
    pod = kubectl(kubeconfig, "get", "pods", "-l", "app=productpage", "-o", "jsonpath={.items[0].metadata.name}")
    out = kubectl(kubeconfig, "logs", pod, "-c", "istio-proxy", "--tail", "5")
    assert "assert failure: fd_ != -1" in out
    assert len(out.splitlines()) == 5


@needs_kubectl
def test_kubectl_pagination_and_missing_objects(simulate):
    _, kubeconfig = simulate("istio-0.5.1-large-mesh")
    out = kubectl(kubeconfig, "get", "pods", "-A", "--chunk-size", "7", "-o", "name")
    assert len(out.split()) > 60
    missing = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "get", "secret", "nope", "-n", "default"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and 'secrets "nope" not found' in missing.stderr


@pytest.fixture
def api(simulate):
    _, kubeconfig = simulate("istio-0.8.0-healthy")
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api_client:
        yield api_client


def test_python_client_lists_typed_pods(api):
    pods = client.CoreV1Api(api).list_namespaced_pod("istio-system", label_selector="istio=mixer")
    assert {p.metadata.labels["istio-mixer-type"] for p in pods.items} == {"policy", "telemetry"}
    assert all(p.status.phase == "Running" for p in pods.items)


def test_python_client_reads_custom_objects_and_deployments(api):
    rules = client.CustomObjectsApi(api).list_cluster_custom_object("config.istio.io", "v1alpha2", "rules")
    assert "promhttp" in {r["metadata"]["name"] for r in rules["items"]}
    telemetry = client.AppsV1Api(api).read_namespaced_deployment("istio-telemetry", "istio-system")
    assert telemetry.status.ready_replicas == telemetry.spec.replicas


def test_python_client_reaches_the_service_proxy(api):
    response = client.CoreV1Api(api).connect_get_namespaced_service_proxy_with_path(
        "istio-telemetry:9093", "istio-system", "metrics", _preload_content=False)
    assert "mixer_runtime_dispatch_count" in response.data.decode()


def test_python_client_sees_not_found_as_an_api_exception(api):
    with pytest.raises(client.ApiException) as raised:
        client.CoreV1Api(api).read_namespaced_secret("nope", "default")
    assert raised.value.status == 404
    assert json.loads(raised.value.body)["reason"] == "NotFound"


def _client(simulate, scenario, **overrides):
    _, kubeconfig = simulate(scenario, **overrides)
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return client.ApiClient(configuration), kubeconfig


def test_a_declared_length_past_the_body_is_a_short_read_for_the_client(simulate):
    import urllib3

    api, kubeconfig = _client(simulate, "istio-0.8.0-healthy", proxy=[
        {"service": "istio-system/istio-telemetry:9093", "path": "metrics", "content_length": 999999}])
    with api, pytest.raises(urllib3.exceptions.ProtocolError, match="IncompleteRead"):
        client.CoreV1Api(api).connect_get_namespaced_service_proxy_with_path("istio-telemetry:9093", "istio-system",
                                                                            "metrics")
    if KUBECTL:
        done = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "get", "--raw",
                               "/api/v1/namespaces/istio-system/services/istio-telemetry:9093/proxy/metrics"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and "unexpected EOF" in done.stderr


def test_a_declared_length_short_of_the_body_cuts_it_and_the_next_request_still_works(simulate):
    api, _ = _client(simulate, "istio-0.8.0-healthy", proxy=[
        {"service": "istio-system/istio-telemetry:9093", "path": "metrics", "content_length": 100}])
    with api:
        core = client.CoreV1Api(api)
        body = core.connect_get_namespaced_service_proxy_with_path("istio-telemetry:9093", "istio-system", "metrics")
        assert len(body) == 100 and not body.endswith("\n")
        assert core.read_namespace("istio-system").metadata.name == "istio-system"  # the cut connection is not reused


def test_pod_metrics_are_served_as_metrics_server_serves_them(simulate):
    usage = {"istio-proxy": {"cpu": "450m", "memory": "41234Ki"}, "*": {"cpu": "3123456n", "memory": "20480Ki"}}
    api, kubeconfig = _client(simulate, "istio-0.5.1-no-metrics-api", pod_metrics=[{"pods": "default", "usage": usage}])
    with api:
        groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
        assert "metrics.k8s.io" in groups
        listed = client.CustomObjectsApi(api).list_namespaced_custom_object(
            "metrics.k8s.io", "v1beta1", "default", "pods", label_selector="app=productpage")
        (item,) = listed["items"]
        assert item["kind"] == "PodMetrics" and item["window"] == "30s" and "labels" not in item["metadata"]
        assert {c["name"]: c["usage"] for c in item["containers"]} == {
            "productpage": usage["*"], "istio-proxy": usage["istio-proxy"]}
        one = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "metrics.k8s.io", "v1beta1", "default", "pods", item["metadata"]["name"])
        assert one["containers"] == item["containers"]
        assert not client.CustomObjectsApi(api).list_namespaced_custom_object(
            "metrics.k8s.io", "v1beta1", "istio-system", "pods")["items"]  # no entry covers istio-system
    if KUBECTL:
        out = kubectl(kubeconfig, "top", "pod", "-n", "default", "-l", "app=productpage", "--containers")
        assert "istio-proxy" in out and "450m" in out and "40Mi" in out
        assert "node-1" in kubectl(kubeconfig, "top", "node")


def test_without_pod_metrics_there_is_no_metrics_api(simulate):
    api, _ = _client(simulate, "istio-0.5.1-no-metrics-api")
    with api:
        assert "metrics.k8s.io" not in {g.name for g in client.ApisApi(api).get_api_versions().groups}


def test_kube_inject_puts_the_sidecar_in_the_deployment_not_only_the_pods(simulate):
    api, _ = _client(simulate, "blind-old-0.8.0-manual-injection")
    with api:
        namespace = client.CoreV1Api(api).read_namespace("default")
        assert "istio-injection" not in (namespace.metadata.labels or {})
        deployment = client.AppsV1Api(api).read_namespaced_deployment("productpage-v1", "default")
        assert [c.name for c in deployment.spec.template.spec.containers] == ["productpage", "istio-proxy"]
        assert "sidecar.istio.io/status" in deployment.spec.template.metadata.annotations
        pods = client.CoreV1Api(api).list_namespaced_pod("default", label_selector="app=productpage").items
        assert [c.name for c in pods[0].spec.containers] == ["productpage", "istio-proxy"]


def test_a_patch_after_jobs_removes_what_the_post_install_job_applied(simulate):
    api, _ = _client(simulate, "istio-0.8.0-healthy", patches=[
        {"kind": "rule", "name": "promhttp", "namespace": "istio-system", "delete": True, "after_jobs": True}])
    with api:
        rules = client.CustomObjectsApi(api).list_namespaced_custom_object("config.istio.io", "v1alpha2",
                                                                           "istio-system", "rules")
        names = {r["metadata"]["name"] for r in rules["items"]}
        assert "promtcp" in names and "promhttp" not in names


@pytest.fixture
def ambient(simulate):
    """An ambient mesh whose node-2 has no ztunnel, with a waypoint that cannot start."""
    _, kubeconfig = simulate("blind-modern-1.28.0-ambient-ztunnel-missing", **{
        "namespaces": {"default": {"istio.io/use-waypoint": "waypoint"}},
        "objects": [{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                     "metadata": {"name": "waypoint", "namespace": "default"},
                     "spec": {"gatewayClassName": "istio-waypoint",
                              "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}},
                    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": "reviews", "namespace": "default"},
                     "spec": {"podSelector": {"matchLabels": {"app": "reviews"}}, "policyTypes": ["Ingress"],
                              "ingress": [{"ports": [{"port": 9080}]}]}}],
        "workloads": {"default/waypoint": {"ready": 0, "waiting": {"istio-proxy": "CrashLoopBackOff"}}}})
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api_client:
        yield api_client


def test_python_client_sees_ambient_capture_per_node(ambient):
    core = client.CoreV1Api(ambient)
    ztunnels = core.list_namespaced_pod("istio-system", label_selector="app=ztunnel").items
    assert sorted(p.spec.node_name for p in ztunnels) == ["node-1", "node-3"]
    pods = {p.metadata.name: p for p in core.list_namespaced_pod("default", label_selector="app").items}
    on_node2 = [p for p in pods.values() if p.spec.node_name == "node-2" and not p.metadata.name.startswith("waypoint")]
    assert on_node2 and all(p.metadata.annotations["ambient.istio.io/redirection"] == "pending"
                            and p.status.phase == "Pending" for p in on_node2)
    events = core.list_namespaced_event("default", field_selector="reason=FailedCreatePodSandBox").items
    assert {e.involved_object.name for e in events} == {p.metadata.name for p in on_node2}
    assert all('plugin type="istio-cni"' in e.message and "no ztunnel connection" in e.message for e in events)
    node1 = next(p for p in ztunnels if p.spec.node_name == "node-1")
    stats = core.connect_get_namespaced_pod_proxy_with_path(f"{node1.metadata.name}:15020", "istio-system", "metrics",
                                                            _preload_content=False).data.decode()
    captured = sum(1 for p in pods.values() if p.spec.node_name == "node-1"
                   and (p.metadata.annotations or {}).get("ambient.istio.io/redirection") == "enabled")
    assert f"workload_manager_active_proxy_count {captured}\n" in stats and stats.endswith("# EOF\n")
    assert "istio_tcp_connections_opened_total{" in stats


def test_python_client_reads_waypoint_and_policy_status(ambient):
    gateway = client.CustomObjectsApi(ambient).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", "default", "gateways", "waypoint")
    conditions = {c["type"]: c for c in gateway["status"]["conditions"]}
    assert conditions["Accepted"]["status"] == "True" and conditions["Programmed"]["status"] == "False"
    classes = client.CustomObjectsApi(ambient).list_cluster_custom_object("gateway.networking.k8s.io", "v1",
                                                                          "gatewayclasses")
    assert "istio-waypoint" in {c["metadata"]["name"] for c in classes["items"]}
    deployment = client.AppsV1Api(ambient).read_namespaced_deployment("waypoint", "default")
    assert deployment.status.ready_replicas == 0
    service = client.CoreV1Api(ambient).read_namespaced_service("reviews", "default")
    bound = next(c for c in service.status.conditions if c.type == "istio.io/WaypointBound")
    assert (bound.status, bound.reason) == ("False", "WaypointIsNotReady")
    policies = client.NetworkingV1Api(ambient).list_namespaced_network_policy("default").items
    assert [p.spec.ingress[0].ports[0].port for p in policies] == [9080]


@needs_kubectl
def test_kubectl_under_the_bots_cluster_role_is_refused_what_the_role_does_not_grant(simulate):
    _, kubeconfig = simulate("blind-modern-1.28.0-bot-rbac-only")  # rbac: deploy/rbac/clusterrole.yaml
    assert "istiod-" in kubectl(kubeconfig, "get", "pods", "-n", "istio-system")
    user = 'User "system:serviceaccount:meshbot:meshbot"'
    for args, message in (
            (("get", "secrets", "-A"), f'secrets is forbidden: {user} cannot list resource "secrets" in API group "" '
                                       "at the cluster scope"),
            (("get", "replicasets", "-n", "default"), f'replicasets.apps is forbidden: {user} cannot list resource '
                                                      '"replicasets" in API group "apps" in the namespace "default"')):
        done = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 1
        assert f"Error from server (Forbidden): {message}" in done.stderr


def test_python_client_under_the_bots_cluster_role_gets_only_the_named_secret(simulate):
    api, _ = _client(simulate, "blind-modern-1.28.0-bot-rbac-only")
    core = client.CoreV1Api(api)
    with pytest.raises(client.ApiException) as other:
        core.read_namespaced_secret("istio-ca-secret", "istio-system")
    assert other.value.status == 403 and json.loads(other.value.body)["reason"] == "Forbidden"
    with pytest.raises(client.ApiException) as named:  # granted by name: the API server says whether it exists
        core.read_namespaced_secret("sidecar-injector-certs", "istio-system")
    assert named.value.status == 404
    assert core.list_namespaced_pod("istio-system").items


@needs_kubectl
def test_pods_carry_field_ownership_that_kubectl_hides_and_meshbot_drops(simulate):
    _, kubeconfig = simulate("istio-1.28.0-healthy")
    [pod] = json.loads(kubectl(kubeconfig, "get", "pods", "-n", "default", "-l", "app=ratings", "-o", "json",
                               "--show-managed-fields"))["items"]
    managers = [(m["manager"], m.get("subresource")) for m in pod["metadata"]["managedFields"]]
    assert managers == [("kube-controller-manager", None), ("kubelet", "status")]
    spec = pod["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]
    assert 'k:{"name":"istio-proxy"}' in {**spec.get("f:containers", {}), **spec.get("f:initContainers", {})}
    assert "managedFields" not in kubectl(kubeconfig, "get", "pods", "-n", "default", "-o", "yaml")
