"""The Helm chart, rendered by Helm's own engine for the default values and every optional
toggle: every object validated against the Kubernetes schemas, the security, probe, drain and
scheduling settings asserted, and bad values rejected by values.schema.json."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import yaml

from tests.deploy.support import (
    CHART_DIR,
    NAMESPACE,
    RELEASE,
    REPO,
    by_kind,
    contract_env_names,
    helm,
    objects,
    one,
    render,
)

kubernetes_validate = pytest.importorskip("kubernetes_validate")

# The oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the version Helm's
# engine renders for offline; every core object must be valid for both.
KUBE_VERSIONS = ("1.29.0", "1.36.0")
# Kinds served by CRDs or other add-ons: no Kubernetes schema exists for them, they are
# checked structurally below instead.
CRD_KINDS = {"ServiceMonitor"}

ALL_TOGGLES: dict[str, Any] = {
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "120"},
        "tls": [{"secretName": "mindmirror-tls", "hosts": ["mindmirror.example.com"]}],
    },
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}}},
    "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6},
    "podDisruptionBudget": {"enabled": True},
    "networkPolicy": {
        "enabled": True,
        "allowedFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}},
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
        ],
        "extraEgress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}],
    },
    "grafanaDashboard": {"enabled": True, "namespace": "monitoring"},
    "model": {"source": "pvc", "pvc": {"claimName": "student-bundles", "subPath": "svamp-v3"}},
    "apiKeys": {"existingSecret": "mindmirror-api-keys"},
    "runtimeClassName": "nvidia",
    "image": {
        "repository": "registry.example.com/ml/mindmirror",
        "tag": "0.1.0-gpu",
        "digest": "sha256:" + "ab" * 32,
    },
    "serviceAccount": {"create": True, "annotations": {"iam.example.com/role": "serving"}},
    "imagePullSecrets": ["registry-credentials"],
    "priorityClassName": "inference",
    "podAnnotations": {"example.com/team": "ml"},
    "podLabels": {"example.com/tier": "inference"},
    "nodeSelector": {"node.kubernetes.io/instance-type": "gpu-h100"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    ],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": RELEASE}},
                    },
                }
            ]
        }
    },
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": RELEASE}},
        }
    ],
    "extraEnv": [{"name": "OMP_NUM_THREADS", "value": "4"}],
    "config": {
        "maxBatchSize": 32,
        "maxWaitMs": 10,
        "maxBatchTokens": 16384,
        "maxQueue": 256,
        "requestTimeoutSeconds": 30,
        "maxInputTokens": 512,
        "truncateInput": False,
        "maxBodyBytes": 1048576,
        "maxNewTokensExplain": 256,
    },
}

# One render per optional toggle, plus the defaults, the CPU variant and everything at once.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "cpu": {"gpu": {"enabled": False}},
    "ingress": {"ingress": ALL_TOGGLES["ingress"]},
    "servicemonitor": {"metrics": ALL_TOGGLES["metrics"]},
    "autoscaling": {"autoscaling": ALL_TOGGLES["autoscaling"]},
    "pdb-max-unavailable": {"podDisruptionBudget": {"enabled": True}},
    "pdb-min-available": {
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": None, "minAvailable": 1}
    },
    "networkpolicy": {"networkPolicy": ALL_TOGGLES["networkPolicy"]},
    "networkpolicy-defaults": {"networkPolicy": {"enabled": True}},
    "grafana-dashboard": {"grafanaDashboard": {"enabled": True}},
    "model-pvc": {"model": ALL_TOGGLES["model"]},
    "api-keys": {"apiKeys": ALL_TOGGLES["apiKeys"]},
    "runtime-class": {"runtimeClassName": "nvidia"},
    "image-digest": {"image": ALL_TOGGLES["image"]},
    "existing-service-account": {"serviceAccount": {"create": False, "name": "inference"}},
    "everything": ALL_TOGGLES,
    "everything-cpu": {**ALL_TOGGLES, "gpu": {"enabled": False}},
    # The example docs/deploy.md installs with.
    "production-example": yaml.safe_load(
        (REPO / "deploy" / "helm-values" / "production-gpu.yaml").read_text()
    ),
}

# Which object each toggle must add (so a toggle that silently renders nothing fails).
TOGGLE_ADDS = {
    "ingress": "Ingress",
    "servicemonitor": "ServiceMonitor",
    "autoscaling": "HorizontalPodAutoscaler",
    "pdb-max-unavailable": "PodDisruptionBudget",
    "pdb-min-available": "PodDisruptionBudget",
    "networkpolicy": "NetworkPolicy",
    "networkpolicy-defaults": "NetworkPolicy",
    "grafana-dashboard": "ConfigMap",
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: objects(render(values)) for name, values in VARIANTS.items()}


def deployment(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objs, "Deployment")


def server(objs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = deployment(objs)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["server"]
    return containers[0]


def env(objs: list[dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in server(objs)["env"]}


# --- rendering and Kubernetes schema validation ---------------------------------------------


def test_default_render_has_exactly_the_core_objects(rendered):
    kinds = sorted(o["kind"] for o in rendered["default"])
    assert kinds == ["Deployment", "Service", "ServiceAccount"]


@pytest.mark.parametrize("variant", sorted(TOGGLE_ADDS))
def test_each_toggle_adds_its_object(rendered, variant):
    kind = TOGGLE_ADDS[variant]
    assert not by_kind(rendered["default"], kind)
    assert len(by_kind(rendered[variant], kind)) == 1


def test_everything_renders_every_optional_object(rendered):
    kinds = {o["kind"] for o in rendered["everything"]}
    assert set(TOGGLE_ADDS.values()) <= kinds


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_core_object_is_valid_kubernetes(rendered, variant, kube_version):
    validated = 0
    for obj in rendered[variant]:
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            # strict: unknown fields are errors too (a misspelt field is silently dropped
            # by the API server otherwise).
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            pytest.fail(f"{variant}: {obj['kind']} invalid for {kube_version} at {path}: {error}")
        validated += 1
    assert validated >= 2  # at least the Deployment and the Service


def test_validator_rejects_a_broken_deployment(rendered):
    """The schema check above can fail: a typo'd field and a wrong type are both caught."""
    broken = copy.deepcopy(deployment(rendered["default"]))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSIONS[-1], strict=True)
    wrong_type = copy.deepcopy(deployment(rendered["default"]))
    wrong_type["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, KUBE_VERSIONS[-1], strict=True)


def test_crd_kinds_really_have_no_kubernetes_schema(rendered):
    """If kubernetes-validate ever ships a ServiceMonitor schema, validate it for real."""
    monitor = one(rendered["servicemonitor"], "ServiceMonitor")
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(monitor, KUBE_VERSIONS[-1], strict=True)


def test_objects_are_namespaced_and_labelled(rendered):
    for obj in rendered["everything"]:
        meta = obj["metadata"]
        expected_ns = "monitoring" if obj["kind"] == "ConfigMap" else NAMESPACE
        assert meta["namespace"] == expected_ns, obj["kind"]
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_helm_lint_strict_is_clean():
    report = helm.lint(CHART_DIR, strict=True)
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []


def test_helm_install_dry_run_works_offline():
    """`helm install --dry-run=client`: the install action itself (schema, templates, hooks)."""
    with helm.Config(namespace=NAMESPACE) as config:
        release = config.install(CHART_DIR, RELEASE, {}, dry_run="client", namespace=NAMESPACE)
    manifests = [d for d in yaml.safe_load_all(release["manifest"]) if d]
    assert {m["kind"] for m in manifests} == {"Deployment", "Service", "ServiceAccount"}
    assert "WARNING: apiKeys.existingSecret is empty" in release["notes"]


# --- security ------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pod_and_container_are_locked_down(rendered, variant):
    pod = deployment(rendered[variant])["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert "hostNetwork" not in pod
    assert "hostPID" not in pod
    pod_sc = pod["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert isinstance(pod_sc["runAsUser"], int)
    assert pod_sc["runAsUser"] > 0
    assert pod_sc["runAsGroup"] > 0
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    container = server(rendered[variant])
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert isinstance(sc["runAsUser"], int)
    assert sc["runAsUser"] > 0
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_writable_paths_are_size_limited_empty_dirs(rendered, variant):
    pod = deployment(rendered[variant])["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in server(rendered[variant])["volumeMounts"]}
    cache_dir = env(rendered[variant])["XDG_CACHE_HOME"]
    for path in ("/tmp", cache_dir):
        volume = volumes[mounts[path]["name"]]
        assert "sizeLimit" in volume["emptyDir"], path
    cuda_cache = env(rendered[variant]).get("CUDA_CACHE_PATH")
    if cuda_cache is not None:
        assert cuda_cache.startswith(cache_dir + "/")
    # Everything else mounted (model, keys) is read-only.
    for path, mount in mounts.items():
        if path not in ("/tmp", cache_dir):
            assert mount.get("readOnly") is True, path


def test_service_account_token_is_never_mounted(rendered):
    account = one(rendered["default"], "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    pod = deployment(rendered["default"])["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    existing = rendered["existing-service-account"]
    assert not by_kind(existing, "ServiceAccount")
    assert deployment(existing)["spec"]["template"]["spec"]["serviceAccountName"] == "inference"


def test_api_keys_come_from_the_existing_secret_read_only(rendered):
    objs = rendered["api-keys"]
    pod = deployment(objs)["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == "mindmirror-api-keys"
    assert volume["secret"]["defaultMode"] == 0o440
    assert volume["secret"]["items"] == [{"key": "api-keys", "path": "api-keys"}]
    mount = next(m for m in server(objs)["volumeMounts"] if m["name"] == volume["name"])
    assert mount["readOnly"] is True
    assert env(objs)["MINDMIRROR_API_KEYS_FILE"] == mount["mountPath"] + "/api-keys"
    # No keys in the environment, no Secret created by the chart.
    assert "MINDMIRROR_API_KEYS" not in env(objs)
    assert not by_kind(objs, "Secret")
    assert "MINDMIRROR_API_KEYS_FILE" not in env(rendered["default"])


# --- probes and graceful shutdown -----------------------------------------------------------


@pytest.mark.parametrize("variant", ["default", "cpu", "everything"])
def test_probes_hit_the_service_endpoints_and_allow_for_model_load(rendered, variant):
    container = server(rendered[variant])
    port_names = {p["name"] for p in container["ports"]}
    startup = container["startupProbe"]
    readiness = container["readinessProbe"]
    liveness = container["livenessProbe"]
    assert startup["httpGet"]["path"] == "/readyz"
    assert readiness["httpGet"]["path"] == "/readyz"
    assert liveness["httpGet"]["path"] == "/healthz"
    for probe in (startup, readiness, liveness):
        assert probe["httpGet"]["port"] in port_names
        assert probe["timeoutSeconds"] < probe["periodSeconds"] or probe is startup
    # Model load + warm-up budget before the pod is restarted: several minutes.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    # Liveness does not kill a busy pod on one slow answer.
    assert liveness["failureThreshold"] * liveness["periodSeconds"] >= 30
    # Readiness reacts within seconds (drain, overload).
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= 15


@pytest.mark.parametrize(
    ("lifecycle", "expected_grace"),
    [({}, 5 + 30 + 15), ({"preStopSleepSeconds": 10, "drainTimeoutSeconds": 120}, 145)],
)
def test_grace_period_outlasts_prestop_and_drain(lifecycle, expected_grace):
    objs = objects(render({"lifecycle": lifecycle}))
    pod = deployment(objs)["spec"]["template"]["spec"]
    container = server(objs)
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "/bin/sleep"
    drain = int(env(objs)["MINDMIRROR_DRAIN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] == expected_grace
    assert pod["terminationGracePeriodSeconds"] > int(sleep[1]) + drain


def test_fractional_settings_keep_their_fraction():
    objs = objects(render({"config": {"requestTimeoutSeconds": 2.5, "maxBodyBytes": 10485760}}))
    assert env(objs)["MINDMIRROR_REQUEST_TIMEOUT_S"] == "2.5"
    assert env(objs)["MINDMIRROR_MAX_BODY_BYTES"] == "10485760"


def test_explicit_grace_period_too_short_for_the_drain_fails():
    with pytest.raises(helm.HelmRenderError, match="must be larger than"):
        render({"lifecycle": {"terminationGracePeriodSeconds": 30}})
    objs = objects(render({"lifecycle": {"terminationGracePeriodSeconds": 90}}))
    assert deployment(objs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 90
    objs = objects(render({"lifecycle": {"terminationGracePeriodSeconds": 1200000}}))
    assert deployment(objs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 1200000


# --- GPU scheduling, image, model -----------------------------------------------------------


def test_gpu_pod_requests_a_gpu_and_tolerates_gpu_nodes(rendered):
    objs = rendered["default"]
    pod = deployment(objs)["spec"]["template"]["spec"]
    container = server(objs)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert "runtimeClassName" not in pod
    assert env(objs)["MINDMIRROR_DEVICE"] == "cuda"
    assert "CUDA_CACHE_PATH" in env(objs)
    assert container["image"].endswith(":0.1.0-gpu")
    # User scheduling rules are added to the GPU ones, not replacing them.
    everything = deployment(rendered["everything"])["spec"]["template"]["spec"]
    assert everything["runtimeClassName"] == "nvidia"
    assert everything["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    assert everything["nodeSelector"]["node.kubernetes.io/instance-type"] == "gpu-h100"
    assert len(everything["tolerations"]) == 2


def test_cpu_variant_has_no_gpu_anything(rendered):
    objs = rendered["cpu"]
    pod = deployment(objs)["spec"]["template"]["spec"]
    container = server(objs)
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert "tolerations" not in pod
    assert "nodeSelector" not in pod
    assert env(objs)["MINDMIRROR_DEVICE"] == "cpu"
    assert "CUDA_CACHE_PATH" not in env(objs)
    assert container["image"].endswith(":0.1.0-cpu")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_image_is_pinned(rendered, variant):
    image = server(rendered[variant])["image"]
    reference = image.split("@")[0]
    repository, _, tag = reference.rpartition(":")
    assert repository
    assert "/" not in tag
    assert tag
    assert tag != "latest"


def test_digest_pins_the_exact_image(rendered):
    image = server(rendered["image-digest"])["image"]
    assert image == "registry.example.com/ml/mindmirror:0.1.0-gpu@sha256:" + "ab" * 32


def test_model_from_image_has_no_volume(rendered):
    objs = rendered["default"]
    assert env(objs)["MINDMIRROR_BUNDLE"] == "/models/bundle"
    assert all("persistentVolumeClaim" not in v for v in pod_volumes(objs))


def test_model_from_pvc_is_mounted_read_only_at_the_bundle_path(rendered):
    objs = rendered["model-pvc"]
    claim = next(v for v in pod_volumes(objs) if "persistentVolumeClaim" in v)
    assert claim["persistentVolumeClaim"] == {"claimName": "student-bundles", "readOnly": True}
    mount = next(m for m in server(objs)["volumeMounts"] if m["name"] == claim["name"])
    assert mount["readOnly"] is True
    assert mount["subPath"] == "svamp-v3"
    assert mount["mountPath"] == env(objs)["MINDMIRROR_BUNDLE"]


def test_pvc_source_without_a_claim_fails_with_a_clear_message():
    with pytest.raises(helm.HelmRenderError, match=r"model\.pvc\.claimName"):
        render({"model": {"source": "pvc"}})


def pod_volumes(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return deployment(objs)["spec"]["template"]["spec"]["volumes"]


# --- service settings, Service, optional objects --------------------------------------------


@pytest.mark.parametrize("variant", ["default", "everything", "cpu"])
def test_settings_env_matches_the_service_contract(rendered, variant):
    names = {n for n in env(rendered[variant]) if n.startswith("MINDMIRROR_")}
    unknown = names - contract_env_names()
    assert not unknown, f"not in docs/contracts.md: {sorted(unknown)}"
    values = env(rendered[variant])
    assert values["MINDMIRROR_ENV"] == "production"
    assert values["MINDMIRROR_HOST"] == "0.0.0.0"  # noqa: S104 (inside a pod, by design)
    port = server(rendered[variant])["ports"][0]
    assert values["MINDMIRROR_PORT"] == str(port["containerPort"])


def test_config_values_reach_the_environment_and_nulls_stay_unset(rendered):
    everything = env(rendered["everything"])
    assert everything["MINDMIRROR_MAX_BATCH_SIZE"] == "32"
    # Helm hands numbers to templates as float64; large ones must not print as 1.048576e+06.
    assert everything["MINDMIRROR_MAX_BODY_BYTES"] == "1048576"
    assert everything["MINDMIRROR_TRUNCATE_INPUT"] == "false"
    assert everything["MINDMIRROR_REQUEST_TIMEOUT_S"] == "30"
    assert everything["OMP_NUM_THREADS"] == "4"
    default = env(rendered["default"])
    assert "MINDMIRROR_MAX_BATCH_SIZE" not in default
    assert "MINDMIRROR_TRUNCATE_INPUT" not in default


def test_service_routes_to_the_pods_http_port(rendered):
    objs = rendered["default"]
    service = one(objs, "Service")
    pod_labels = deployment(objs)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment(objs)["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]


def test_ingress_exposes_only_the_api(rendered):
    ingress = one(rendered["ingress"], "Ingress")
    service = one(rendered["ingress"], "Service")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [p["path"] for p in paths] == ["/v1"]
    for path in paths:
        assert path["backend"]["service"] == {
            "name": service["metadata"]["name"],
            "port": {"name": "http"},
        }
    assert ingress["spec"]["tls"][0]["secretName"] == "mindmirror-tls"


def test_servicemonitor_scrapes_the_service_metrics_port(rendered):
    """Structural check of the CRD object (no schema is available offline)."""
    objs = rendered["servicemonitor"]
    monitor = one(objs, "ServiceMonitor")
    service = one(objs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(monitor["spec"]) == {"namespaceSelector", "selector", "endpoints"}
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    [endpoint] = monitor["spec"]["endpoints"]
    assert set(endpoint) == {"port", "path", "scheme", "interval", "scrapeTimeout"}
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["scheme"] == "http"
    durations = [prometheus_seconds(endpoint[k]) for k in ("scrapeTimeout", "interval")]
    assert 0 < durations[0] < durations[1]


def prometheus_seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+)(ms|s|m|h)", duration)
    assert parts
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def test_hpa_scales_the_deployment_on_the_queue_depth_metric(rendered):
    objs = rendered["autoscaling"]
    hpa = one(objs, "HorizontalPodAutoscaler")
    target = deployment(objs)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": target["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "mindmirror_queue_depth"
    assert metric["pods"]["target"]["type"] == "AverageValue"
    # The HPA owns the replica count: a fixed one would fight it on every upgrade.
    assert "replicas" not in target["spec"]
    assert deployment(rendered["default"])["spec"]["replicas"] == 1


def test_hpa_min_above_max_fails():
    with pytest.raises(helm.HelmRenderError, match="minReplicas"):
        render({"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}})


def test_pdb_uses_exactly_one_bound(rendered):
    by_max = one(rendered["pdb-max-unavailable"], "PodDisruptionBudget")["spec"]
    assert by_max["maxUnavailable"] == 1
    assert "minAvailable" not in by_max
    by_min = one(rendered["pdb-min-available"], "PodDisruptionBudget")["spec"]
    assert by_min["minAvailable"] == 1
    assert "maxUnavailable" not in by_min
    service = one(rendered["pdb-max-unavailable"], "Service")
    assert by_max["selector"]["matchLabels"] == service["spec"]["selector"]
    with pytest.raises(helm.HelmRenderError, match="exactly one"):
        render({"podDisruptionBudget": {"enabled": True, "minAvailable": 1}})


def test_networkpolicy_allows_only_the_http_port_and_no_egress(rendered):
    default_policy = one(rendered["networkpolicy-defaults"], "NetworkPolicy")["spec"]
    assert default_policy["policyTypes"] == ["Ingress", "Egress"]
    assert default_policy["egress"] == []
    [rule] = default_policy["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert "from" not in rule
    custom = one(rendered["networkpolicy"], "NetworkPolicy")["spec"]
    assert len(custom["ingress"][0]["from"]) == 2
    assert custom["egress"] == ALL_TOGGLES["networkPolicy"]["extraEgress"]


def test_dashboard_configmap_carries_the_dashboard_file(rendered):
    configmap = one(rendered["grafana-dashboard"], "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART_DIR / "dashboards" / "mindmirror.json").read_text())
    assert json.loads(configmap["data"]["mindmirror.json"]) == shipped


# --- values.schema.json -----------------------------------------------------------------------

BAD_VALUES = [
    ({"image": {"tag": "latest"}}, "/image/tag"),
    ({"image": {"tag": "v1 beta"}}, "/image/tag"),
    ({"image": {"digest": "sha256:abc"}}, "/image/digest"),
    ({"replicaCount": "two"}, "/replicaCount"),
    ({"replicas": 2}, "replicas"),
    ({"securityContext": {"runAsUser": 0}}, "/securityContext/runAsUser"),
    ({"model": {"source": "s3"}}, "/model/source"),
    ({"model": {"path": "models/bundle"}}, "/model/path"),
    ({"gpu": {"count": 0}}, "/gpu/count"),
    ({"gpu": {"enable": True}}, "enable"),
    ({"service": {"type": "Ingress"}}, "/service/type"),
    ({"config": {"maxBatchSize": 0}}, "/config/maxBatchSize"),
    ({"config": {"backend": "tensorrt"}}, "/config/backend"),
    ({"probes": {"startup": {"failureThreshold": -1}}}, "/probes/startup/failureThreshold"),
    ({"lifecycle": {"drainTimeoutSeconds": "30s"}}, "/lifecycle/drainTimeoutSeconds"),
    ({"resources": {"limits": {"memory": "eight gigs"}}}, "/resources/limits/memory"),
    ({"metrics": {"serviceMonitor": {"interval": "15"}}}, "/metrics/serviceMonitor/interval"),
    ({"ingress": {"hosts": [{"host": "a.example.com", "paths": [{"path": "v1"}]}]}}, "paths"),
]


@pytest.mark.parametrize(("values", "where"), BAD_VALUES, ids=[w for _, w in BAD_VALUES])
def test_schema_rejects_bad_values(values, where):
    with helm.Chart.load(CHART_DIR) as chart:
        with pytest.raises(helm.HelmValuesError) as error:
            chart.validate_schema(values)
        assert where in str(error.value)
        # Rendering (what `helm install/template` does) refuses the same values.
        with pytest.raises(helm.HelmValuesError):
            chart.render(values=values, name=RELEASE, namespace=NAMESPACE)


def test_bad_value_fails_helm_install():
    with helm.Config(namespace=NAMESPACE) as config, pytest.raises(helm.HelmError) as error:
        config.install(CHART_DIR, RELEASE, {"image": {"tag": "latest"}}, dry_run="client")
    assert "/image/tag" in str(error.value)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_schema_accepts_every_tested_variant(variant):
    with helm.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(VARIANTS[variant])


def test_every_value_is_documented_in_values_yaml_and_the_schema():
    """Every setting in values.yaml has a `# --` comment right above it and a schema entry with
    a description; the schema closes every object it describes, so a misspelt key fails."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    text = (CHART_DIR / "values.yaml").read_text()
    lines = text.splitlines()
    undocumented: list[str] = []

    def walk(node: yaml.Node, schema_node: dict[str, Any], path: str) -> None:
        assert schema_node.get("additionalProperties") is False, f"{path or '/'} is open"
        assert isinstance(node, yaml.MappingNode)
        for key_node, value_node in node.value:
            key = key_node.value
            child = schema_node["properties"].get(key)
            assert child is not None, f"{path}/{key} missing from values.schema.json"
            assert child.get("description"), f"{path}/{key} has no description in the schema"
            if "properties" in child:  # a group: its settings carry the comments
                walk(value_node, child, f"{path}/{key}")
                continue
            above = lines[key_node.start_mark.line - 1].strip()
            # A multi-line comment ends right above the key; its first line starts "# --".
            first = key_node.start_mark.line - 1
            while first > 0 and lines[first - 1].strip().startswith("#"):
                first -= 1
            if not (above.startswith("#") and lines[first].strip().startswith("# --")):
                undocumented.append(f"{path}/{key}")

    walk(yaml.compose(text), schema, "")
    assert not undocumented, f"values.yaml settings without a '# --' comment: {undocumented}"
