"""deploy/ renders, validates against the Kubernetes schemas, and every container is locked down."""

from __future__ import annotations

import copy
import os
import re
import shlex
import subprocess

import pytest
import yaml
from deploykit import DEPLOY, KUBECONFIG_DIR, MESHBOT_VARIANTS, NAMESPACE, VARIANTS, find, one, pod_specs

from bot.cli import build_parser
from bot.config import load_config

SCHEMA_VERSION = "1.30.0"  # the oldest Kubernetes minor still widely run; kubernetes-validate ships it
MESHBOT_DEPLOYMENTS = ("meshbot-bot", "meshbot-worker", "meshbot-scheduler")
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


def kubernetes_validate():
    try:
        import kubernetes_validate as kv
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("kubernetes-validate is not installed (the test extra has it)")
        pytest.skip("kubernetes-validate is not installed (pip install -e '.[test]')")
    return kv


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_object_validates_against_the_kubernetes_schema(rendered, variant):
    kv = kubernetes_validate()
    errors = []
    for obj in rendered[variant]:
        try:
            kv.validate(obj, SCHEMA_VERSION, strict=True)  # strict: unknown fields are errors too
        except kv.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")
        except kv.SchemaNotFoundError as exc:
            errors.append(exc.message)
    assert not errors, "\n".join(errors)


def test_the_schema_validator_rejects_a_broken_object(rendered):
    kv = kubernetes_validate()
    deployment = copy.deepcopy(one(rendered["socket"], "Deployment", "meshbot-bot"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, SCHEMA_VERSION, strict=True)
    deployment = copy.deepcopy(one(rendered["socket"], "Deployment", "meshbot-bot"))
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, SCHEMA_VERSION, strict=True)


@pytest.mark.parametrize("variant", MESHBOT_VARIANTS)
def test_everything_lives_in_the_meshbot_namespace(rendered, variant):
    misplaced = [f"{o['kind']}/{o['metadata']['name']}: {o['metadata'].get('namespace')}"
                 for o in rendered[variant]
                 if o["kind"] not in CLUSTER_SCOPED and o["metadata"].get("namespace") != NAMESPACE]
    assert not misplaced
    namespace = one(rendered[variant], "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("variant", MESHBOT_VARIANTS)
def test_the_three_processes_and_their_shape(rendered, variant):
    objects = rendered[variant]
    for name in MESHBOT_DEPLOYMENTS:
        one(objects, "Deployment", name)
    scheduler = one(objects, "Deployment", "meshbot-scheduler")
    assert scheduler["spec"]["replicas"] == 1, "digests must fire from exactly one scheduler"
    assert scheduler["spec"]["strategy"] == {"type": "Recreate"}, "an update must never run two schedulers"
    worker = one(objects, "Deployment", "meshbot-worker")
    assert worker["spec"]["replicas"] >= 2
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60, "time to finish a job"


@pytest.mark.parametrize("variant", MESHBOT_VARIANTS)
def test_every_container_is_locked_down(rendered, variant):
    problems = []
    for where, spec in pod_specs(rendered[variant]):
        pod_sc = spec.get("securityContext", {})
        if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccompProfile is not RuntimeDefault")
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            problems.append(f"{where}: shares a host namespace")
        for volume in spec.get("volumes", []):
            if "hostPath" in volume:
                problems.append(f"{where}: hostPath volume {volume['name']}")
        for c in spec.get("initContainers", []) + spec["containers"]:
            at = f"{where} container {c['name']}"
            sc = {**pod_sc, **c.get("securityContext", {})}
            if sc.get("runAsNonRoot") is not True or not sc.get("runAsUser"):
                problems.append(f"{at}: not pinned to a non-root UID")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: root filesystem is writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: privilege escalation allowed")
            if sc.get("privileged"):
                problems.append(f"{at}: privileged")
            if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
                problems.append(f"{at}: capabilities not dropped to none")
            if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append(f"{at}: seccompProfile is not RuntimeDefault")
            resources = c.get("resources", {})
            for kind in ("requests", "limits"):
                if set(resources.get(kind, {})) != {"cpu", "memory"}:
                    problems.append(f"{at}: {kind} must set cpu and memory")
            if "livenessProbe" not in c or "readinessProbe" not in c:
                problems.append(f"{at}: missing a liveness or readiness probe")
            image = c["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if "@sha256:" not in image and (not tag or tag == "latest"):
                problems.append(f"{at}: image {image} is not pinned by tag or digest")
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if "/tmp" not in mounts:
                problems.append(f"{at}: no writable /tmp (emptyDir) for a read-only root filesystem")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("variant", MESHBOT_VARIANTS)
def test_only_the_worker_mounts_a_service_account_token(rendered, variant):
    objects = rendered[variant]
    for where, spec in pod_specs(objects):
        if where == "Deployment/meshbot-worker":
            assert spec["automountServiceAccountToken"] is True
            assert spec["serviceAccountName"] == "meshbot-worker"
        else:
            assert spec.get("automountServiceAccountToken") is False, f"{where} mounts a token it never uses"
            assert spec.get("serviceAccountName") != "meshbot-worker", f"{where} runs as the reader"
    for account in find(objects, "ServiceAccount"):
        assert account.get("automountServiceAccountToken") is False, "pods opt in, accounts do not"
    binding = one(objects, "ClusterRoleBinding", "meshbot-reader")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "meshbot-worker", "namespace": NAMESPACE}]
    assert binding["roleRef"]["name"] == "meshbot-reader"


def container(objects: list[dict], deployment: str) -> dict:
    containers = one(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["meshbot"]
    return containers[0]


def env(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


@pytest.mark.parametrize("variant", MESHBOT_VARIANTS)
def test_container_arguments_are_what_the_cli_accepts(rendered, variant):
    """The args of each process parse with meshbot's own parser, so a renamed flag fails here."""
    parser = build_parser()
    expected = {"meshbot-bot": "serve", "meshbot-worker": "worker", "meshbot-scheduler": "scheduler"}
    for deployment, command in expected.items():
        args = container(rendered[variant], deployment)["args"]
        assert all(isinstance(a, str) for a in args), f"{deployment}: {args}"
        parsed = parser.parse_args(args)
        assert parsed.command == command, f"{deployment} runs {shlex.join(args)}"


@pytest.mark.parametrize("variant", MESHBOT_VARIANTS)
def test_probes_hit_the_health_endpoints(rendered, variant):
    objects = rendered[variant]
    parser = build_parser()
    for deployment in ("meshbot-bot", "meshbot-worker"):
        c = container(objects, deployment)
        args = parser.parse_args(c["args"])
        port = args.port if deployment == "meshbot-bot" else args.health_port
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert ports[c[probe]["httpGet"]["port"]] == port, f"{deployment} {probe} misses the served port"
        if deployment == "meshbot-bot":
            assert args.host == "0.0.0.0", "the kubelet cannot reach a server on 127.0.0.1"


@pytest.mark.parametrize("variant", MESHBOT_VARIANTS)
def test_secrets_come_from_secret_objects_and_config_from_the_configmap(rendered, variant):
    objects = rendered[variant]
    for deployment in MESHBOT_DEPLOYMENTS:
        c = container(objects, deployment)
        variables = env(c)
        for name, var in variables.items():
            if name.startswith("SLACK_") or (name == "REDIS_URL" and "external-redis" in variant):
                assert "value" not in var and "secretKeyRef" in var.get("valueFrom", {}), f"{deployment} {name}"
        config_path = variables["MESHBOT_CONFIG"]["value"]
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert os.path.dirname(config_path) in mounts and mounts[os.path.dirname(config_path)]["readOnly"]
    bot, worker, scheduler = (env(container(objects, d)) for d in MESHBOT_DEPLOYMENTS)
    assert "SLACK_BOT_TOKEN" in bot and "SLACK_BOT_TOKEN" in worker
    assert not any(n.startswith("SLACK_") for n in scheduler), "the scheduler only enqueues; it holds no token"
    assert "SLACK_APP_TOKEN" not in worker and "SLACK_SIGNING_SECRET" not in worker


@pytest.mark.parametrize("variant", MESHBOT_VARIANTS)
def test_only_the_worker_mounts_remote_kubeconfigs_read_only(rendered, variant):
    objects = rendered[variant]
    for deployment in MESHBOT_DEPLOYMENTS:
        spec = one(objects, "Deployment", deployment)["spec"]["template"]["spec"]
        c = spec["containers"][0]
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        if deployment != "meshbot-worker":
            assert KUBECONFIG_DIR not in mounts
            continue
        mount = mounts[KUBECONFIG_DIR]
        assert mount["readOnly"] is True
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "meshbot-kubeconfigs"
        assert volume["secret"]["optional"] is True, "a deployment with only the local cluster needs no Secret"
        assert volume["secret"]["defaultMode"] & 0o007 == 0, "kubeconfigs are not world-readable"


def test_the_shipped_config_is_a_valid_meshbot_config(rendered, tmp_path):
    configmaps = [c for c in find(rendered["socket"], "ConfigMap")
                  if c["metadata"]["name"].startswith("meshbot-config")]
    assert len(configmaps) == 1
    data = configmaps[0]["data"]
    mount_name = os.path.basename(env(container(rendered["socket"], "meshbot-worker"))["MESHBOT_CONFIG"]["value"])
    assert list(data) == [mount_name]
    path = tmp_path / mount_name
    path.write_text(data[mount_name])
    config = load_config(path)
    assert config.default_cluster in config.clusters
    for name, cluster in config.clusters.items():
        assert cluster.kubeconfig is None or cluster.kubeconfig.startswith(KUBECONFIG_DIR + "/"), name


def test_socket_mode_has_no_ingress_and_http_mode_exposes_only_slack_events(rendered):
    socket = rendered["socket"]
    assert not find(socket, "Ingress") and not find(socket, "Service", "meshbot-bot")
    assert "--socket" in container(socket, "meshbot-bot")["args"]

    http = rendered["http"]
    bot = container(http, "meshbot-bot")
    assert "--socket" not in bot["args"]
    service = one(http, "Service", "meshbot-bot")
    labels = one(http, "Deployment", "meshbot-bot")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in bot["ports"]}
    service_port = service["spec"]["ports"][0]
    assert service_port["targetPort"] in ports
    ingress = one(http, "Ingress", "meshbot-bot")
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/slack/events", "Exact")]
    backend = paths[0]["backend"]["service"]
    assert backend["name"] == "meshbot-bot" and backend["port"]["name"] == service_port["name"]
    assert ingress["spec"]["tls"], "Slack only calls https:// request URLs"


def test_in_cluster_redis_is_reachable_only_by_meshbot(rendered):
    objects = rendered["socket"]
    service = one(objects, "Service", "meshbot-redis")
    url = env(container(objects, "meshbot-worker"))["REDIS_URL"]["value"]
    assert re.fullmatch(rf"redis://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/\d+", url)
    policy = one(objects, "NetworkPolicy", "meshbot-redis")
    redis_labels = one(objects, "Deployment", "meshbot-redis")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= redis_labels.items()
    allowed = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    for deployment in MESHBOT_DEPLOYMENTS:
        labels = one(objects, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
        assert allowed.items() <= labels.items(), f"{deployment} cannot reach Redis"
    assert not (allowed.items() <= redis_labels.items())


@pytest.mark.parametrize("variant", ["socket-external-redis", "http-external-redis-hpa"])
def test_external_redis_replaces_the_in_cluster_one(rendered, variant):
    objects = rendered[variant]
    assert not [o for o in objects if o["metadata"]["name"] == "meshbot-redis"]
    for deployment in MESHBOT_DEPLOYMENTS:
        var = env(container(objects, deployment))["REDIS_URL"]
        assert var == {"name": "REDIS_URL",
                       "valueFrom": {"secretKeyRef": {"name": "meshbot-redis", "key": "REDIS_URL"}}}


def test_worker_hpa_targets_the_worker(rendered):
    hpa = one(rendered["http-external-redis-hpa"], "HorizontalPodAutoscaler", "meshbot-worker")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "meshbot-worker"}
    assert hpa["spec"]["minReplicas"] >= 2
    assert not find(rendered["socket"], "HorizontalPodAutoscaler")


def test_remote_cluster_kit_binds_the_same_reader_role(rendered):
    remote, local = rendered["remote-cluster"], rendered["socket"]
    assert one(remote, "ClusterRole", "meshbot-reader")["rules"] == one(local, "ClusterRole", "meshbot-reader")["rules"]
    binding = one(remote, "ClusterRoleBinding", "meshbot-reader")
    account = one(remote, "ServiceAccount", "meshbot-reader")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "meshbot-reader",
                                    "namespace": account["metadata"]["namespace"]}]
    token = one(remote, "Secret", "meshbot-reader-token")
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "meshbot-reader"
    assert not pod_specs(remote), "nothing runs on a remote cluster"


def test_the_readme_overlay_example_renders(kubectl, tmp_path):
    """deploy/README.md's own-overlay example, as written, with its components enabled."""
    readme = (DEPLOY / "README.md").read_text()
    block = re.search(r"```yaml\n# my-meshbot/kustomization.yaml\n(.*?)```", readme, re.S).group(1)
    block = block.replace("# components:", "components:").replace("#   - ../deploy", "  - ../deploy")
    target = tmp_path / "my-meshbot"
    target.mkdir()
    (target / "kustomization.yaml").write_text(
        block.replace("../deploy/", os.path.relpath(DEPLOY, target) + "/"))
    (target / "meshbot.yaml").write_text("clusters:\n  prod:\n    kubeconfig: /etc/meshbot/kubeconfigs/prod\n"
                                         "default_cluster: prod\n")
    proc = subprocess.run([kubectl, "kustomize", str(target)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    objects = [o for o in yaml.safe_load_all(proc.stdout) if o]
    for deployment in MESHBOT_DEPLOYMENTS:
        assert container(objects, deployment)["image"] == "registry.example.com/platform/meshbot:0.1.0"
    (configmap,) = [c for c in find(objects, "ConfigMap") if c["metadata"]["name"].startswith("meshbot-config")]
    assert "default_cluster: prod" in configmap["data"]["meshbot.yaml"]
    assert configmap["metadata"]["namespace"] == NAMESPACE
    assert not find(objects, "Deployment", "meshbot-redis") and find(objects, "HorizontalPodAutoscaler")
