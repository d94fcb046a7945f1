"""The cluster definitions in cluster/deploy/ parse, pass Ray's own validators and agree with
configs/serve.yaml. Nothing here starts Ray: the files are read, validated and compared."""

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray.autoscaler._private.providers import _get_default_config
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.serve.schema import ServeDeploySchema

from cluster import kuberay
from cluster.local import THROUGHPUT_ENV
from serve_app.serve_hooks import CALLBACK_ENV
from cluster.serve_deploy import APP_NAME, DEFAULT_SERVE_CONFIG
from configs.settings import SettingsError, load_yaml

REPO = Path(__file__).resolve().parents[2]
RAY_UP_YAML = REPO / "cluster" / "deploy" / "aws-ray-cluster.yaml"
PINNED = "ghcr.io/acme/tracemill:0.1.0@sha256:" + "0f" * 32
RERENDER = (f"python -m cluster.kuberay --image {kuberay.EXAMPLE_IMAGE} "
            "--output cluster/deploy/kuberay-rayservice.yaml")
THROUGHPUT_FLAGS = [f"{key}={value}" for key, value in (THROUGHPUT_ENV | CALLBACK_ENV).items()]


def ray_up_config() -> dict[str, Any]:
    return yaml.safe_load(RAY_UP_YAML.read_text())


def worker_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: spec for name, spec in config["available_node_types"].items() if name != config["head_node_type"]}


# ---- `ray up` YAML -------------------------------------------------------------------------

def test_ray_up_yaml_passes_rays_validator_as_written_and_as_ray_up_prepares_it() -> None:
    config = ray_up_config()
    validate_config(copy.deepcopy(config))  # complete on its own, before any defaults
    prepared = prepare_config(copy.deepcopy(config))  # what `ray up` does before validating
    validate_config(prepared)
    # Ray's AWS defaults are merged per top-level key; any key left out would bring theirs
    # (a nightly Ray wheel in setup_commands, boto3 in head_setup_commands, an 18.04 AMI).
    missing = set(_get_default_config({"type": "aws"})) - set(config)
    assert not missing, f"set these keys in {RAY_UP_YAML.name}, or Ray's defaults fill them: {sorted(missing)}"
    assert prepared["head_setup_commands"] == config["setup_commands"] + config["head_setup_commands"]
    assert prepared["worker_setup_commands"] == config["setup_commands"] + config["worker_setup_commands"]


def test_ray_up_bounds_are_sane() -> None:
    # Ray's validator checks only the sum of min_workers against the global max_workers: it
    # accepts min > max within a type, negative bounds and upscaling_speed 0, so check here.
    config = ray_up_config()
    head = config["available_node_types"][config["head_node_type"]]
    assert head["min_workers"] == head["max_workers"] == 0
    assert head["resources"]["CPU"] >= 1, "the head runs Serve and the shards: it needs its CPUs"
    [(name, worker)] = worker_types(config).items()
    assert worker["min_workers"] == 0 and worker["max_workers"] == 8
    for spec in worker_types(config).values():
        assert 0 <= spec["min_workers"] <= spec["max_workers"] <= config["max_workers"], name
        assert spec["resources"]["CPU"] >= 1
    assert config["idle_timeout_minutes"] == 5
    assert config["upscaling_speed"] > 0
    assert head["node_config"]["InstanceType"] == "m6i.xlarge"
    assert worker["node_config"]["InstanceType"] == "c6i.2xlarge"
    assert config["cluster_name"] == "tracemill" and config["auth"]["ssh_user"] == "ubuntu"
    assert config["provider"] == {"type": "aws", "region": "us-east-1", "cache_stopped_nodes": True}


def test_ray_up_installs_tracemill_and_the_matching_ray_on_every_node() -> None:
    config = ray_up_config()
    assert config["file_mounts"] == {"~/tracemill": "."}, "run from the repo root: '.' is the working tree"
    assert (REPO / "pyproject.toml").exists()
    [install] = [c for c in config["setup_commands"] if "-e ~/tracemill" in c]
    assert "pip install" in install and f'"ray[serve]=={ray.__version__}"' in install
    assert any(".git" in pattern for pattern in config["rsync_exclude"])


def test_ray_up_starts_ray_with_token_auth_throughput_mode_and_metrics() -> None:
    config = ray_up_config()
    [head_start] = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    [worker_start] = [c for c in config["worker_start_ray_commands"] if "ray start" in c]
    for flag in ("--head", "--port=6379", "--dashboard-host=127.0.0.1",
                 "--autoscaling-config=~/ray_bootstrap_config.yaml", "--metrics-export-port=8080"):
        assert flag in head_start.split(), flag
    assert "--address=$RAY_HEAD_IP:6379" in worker_start.split()
    assert "--metrics-export-port=8080" in worker_start.split()
    for start in (head_start, worker_start):
        assert "RAY_AUTH_MODE=token" in start.split()
        assert all(flag in start.split() for flag in THROUGHPUT_FLAGS), start
    # Workers can only join if they hold the head's token: made there, synced to them.
    assert any("get-auth-token --generate" in c for c in config["head_setup_commands"])
    assert "~/.ray/auth_token" in config["cluster_synced_files"]


# ---- KubeRay RayService ----------------------------------------------------------------------

def committed_documents() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(kuberay.EXAMPLE_MANIFEST.read_text()))


def committed_manifest() -> dict[str, Any]:
    [rayservice] = [d for d in committed_documents() if d["kind"] == "RayService"]
    return rayservice


def committed_policy() -> dict[str, Any]:
    [policy] = [d for d in committed_documents() if d["kind"] == "NetworkPolicy"]
    return policy


def serve_config_v2(manifest: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(manifest["spec"]["serveConfigV2"])


def test_committed_manifest_is_what_the_generator_renders_today() -> None:
    text = kuberay.EXAMPLE_MANIFEST.read_text()
    assert text.startswith("# GENERATED by `python -m cluster.kuberay`") and "do not edit by hand" in text
    assert RERENDER in text
    expected = kuberay.render_manifests(image=kuberay.EXAMPLE_IMAGE)
    assert committed_documents() == expected, (
        f"{kuberay.EXAMPLE_MANIFEST.name} is stale (configs/serve.yaml or cluster/kuberay.py changed); "
        f"re-render it from the repo root: {RERENDER}")


def test_serve_config_v2_is_configs_serve_yaml_for_pods() -> None:
    source = load_yaml(DEFAULT_SERVE_CONFIG)
    embedded = serve_config_v2(committed_manifest())
    ServeDeploySchema.model_validate(embedded)
    assert embedded["proxy_location"] == source["proxy_location"]
    assert embedded["http_options"] == {**source["http_options"], "host": "0.0.0.0", "port": 8000}
    [app] = [a for a in embedded["applications"] if a["name"] == APP_NAME]
    [source_app] = [a for a in source["applications"] if a["name"] == APP_NAME]
    assert app["args"] == {}, "the manifest carries no settings: the builder reads the pod environment"
    assert {k: v for k, v in app.items() if k != "args"} == {k: v for k, v in source_app.items() if k != "args"}
    assert [d["name"] for d in app["deployments"]] == [d["name"] for d in source_app["deployments"]]
    for ingress, source_ingress in zip(app["deployments"], source_app["deployments"]):
        for option in ("max_ongoing_requests", "autoscaling_config", "ray_actor_options"):
            assert ingress[option] == source_ingress[option], option
    assert app["import_path"] == "serve_app.app:build_app"


def test_manifest_structure() -> None:
    manifest = committed_manifest()
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayService"
    assert isinstance(manifest["spec"]["serveConfigV2"], str), "KubeRay wants serveConfigV2 as a YAML string"
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["enableInTreeAutoscaling"] is True
    assert {k: v for k, v in cluster["autoscalerOptions"].items() if k != "securityContext"} == \
        {"idleTimeoutSeconds": 300, "upscalingMode": "Default"}
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0" and head["rayStartParams"]["num-cpus"] == "2"
    assert all(isinstance(v, str) for v in head["rayStartParams"].values()), "rayStartParams values are strings"
    [group] = cluster["workerGroupSpecs"]
    assert group["groupName"] == "cpu" and (group["minReplicas"], group["maxReplicas"]) == (1, 10)
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    for template in (head["template"], group["template"]):
        assert template["metadata"]["annotations"]["prometheus.io/port"] == "8080"
        [container] = template["spec"]["containers"]
        assert container["image"] == kuberay.EXAMPLE_IMAGE
        assert container["envFrom"] == [{"secretRef": {"name": "tracemill-env"}}]
        assert {"containerPort": 8080, "name": "metrics"} in container["ports"]
        # Throughput mode, and the proxy hook that replaces a request id that is not plain.
        assert {e["name"]: e["value"] for e in container["env"]} == THROUGHPUT_ENV | CALLBACK_ENV
        assert container["resources"]["requests"] and container["resources"]["limits"]
    assert {"containerPort": 8000, "name": "serve"} in head["template"]["spec"]["containers"][0]["ports"]


def test_manifest_holds_no_secret_even_when_the_renderer_has_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2@db/x")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("TRACEMILL_S3_BUCKET", "private-bucket")
    manifest = kuberay.render_rayservice(image=kuberay.EXAMPLE_IMAGE)
    for text in (yaml.safe_dump(manifest), kuberay.EXAMPLE_MANIFEST.read_text()):
        for fragment in ("postgresql://", "postgres://", "sk-", "hunter2", "private-bucket"):
            assert fragment not in text, fragment
    # Settings reach the pods only through envFrom (the Secret), never as literal env values.
    cluster = manifest["spec"]["rayClusterConfig"]
    for template in [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]:
        for container in template["spec"]["containers"]:
            assert {e["name"] for e in container["env"]} <= set(THROUGHPUT_ENV | CALLBACK_ENV)


def test_generator_uses_its_arguments() -> None:
    pinned = "registry.example/tm:1@sha256:" + "ab" * 32
    manifest = kuberay.render_rayservice(image=pinned, namespace="ingest",
                                         secret_name="tm-secrets", worker_min=0, worker_max=3)
    assert manifest["metadata"]["namespace"] == "ingest"
    [group] = manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (0, 0, 3)
    [container] = group["template"]["spec"]["containers"]
    assert container["image"] == pinned
    assert container["envFrom"] == [{"secretRef": {"name": "tm-secrets"}}]
    [_, policy] = kuberay.render_manifests(image=pinned, namespace="ingest")
    assert policy["metadata"]["namespace"] == "ingest"


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"image": "", "worker_min": 1, "worker_max": 2}, "image must name a container image"),
        ({"image": "  ", "worker_min": 1, "worker_max": 2}, "image must name a container image"),
        ({"image": "a b", "worker_min": 1, "worker_max": 2}, "contains whitespace"),
        ({"image": PINNED, "worker_min": 5, "worker_max": 2}, r"worker_min \(5\) must not exceed worker_max \(2\)"),
        ({"image": PINNED, "worker_min": -1, "worker_max": 2}, "worker_min must be >= 0"),
        ({"image": PINNED, "worker_min": 0, "worker_max": 0}, "worker_max must be >= 1"),
        ({"image": PINNED, "worker_min": "1", "worker_max": 2}, "worker_min must be an integer"),
        ({"image": PINNED, "namespace": "Not_A_Name"}, "not a valid Kubernetes name"),
        ({"image": PINNED, "secret_name": ""}, "secret name"),
        ({"image": "ghcr.io/acme/tracemill:0.1.0"}, "not pinned by digest"),
        ({"image": "ghcr.io/acme/tracemill@sha256:abc"}, "not pinned by digest"),  # not a whole digest
    ],
)
def test_bad_generator_inputs_are_refused_clearly(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        kuberay.render_rayservice(**kwargs)


def test_broken_serve_config_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("applications: []\n")
    with pytest.raises(SettingsError, match="serve.yaml: expected exactly one application"):
        kuberay.render_rayservice(path, image=PINNED)


def test_cli_writes_the_manifest_and_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rayservice.yaml"
    assert kuberay.main(["--image", kuberay.EXAMPLE_IMAGE, "--output", str(out)]) == 0
    assert list(yaml.safe_load_all(out.read_text())) == committed_documents()
    assert kuberay.main(["--image", PINNED, "--worker-min", "4", "--worker-max", "2"]) == 2
    assert "worker_min (4) must not exceed worker_max (2)" in capsys.readouterr().err
    assert kuberay.main(["--image", "ghcr.io/acme/tm:1"]) == 2
    assert "not pinned by digest" in capsys.readouterr().err
    assert kuberay.main(["--image", "ghcr.io/acme/tm:1", "--allow-unpinned-image", "--output", str(out)]) == 0
    assert yaml.safe_load_all(out.read_text()).__next__()["spec"]["rayClusterConfig"]["headGroupSpec"][
        "template"]["spec"]["containers"][0]["image"] == "ghcr.io/acme/tm:1"
    assert kuberay.main(["--image", PINNED, "--output", str(tmp_path / "missing" / "m.yaml")]) == 2
    assert "cannot write" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        kuberay.main([])  # --image is required
    assert info.value.code == 2
    assert "--image" in capsys.readouterr().err


def test_the_committed_example_is_pinned_by_digest() -> None:
    for template in _pod_templates(committed_manifest()):
        for container in template["spec"]["containers"]:
            assert re.search(r"@sha256:[0-9a-f]{64}$", container["image"]), container["image"]


def _pod_templates(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = manifest["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]


def test_pods_run_locked_down() -> None:
    manifest = committed_manifest()
    for template in _pod_templates(manifest):
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
            assert context["readOnlyRootFilesystem"] is True and context["runAsNonRoot"] is True
            # Ray writes its session directory under /tmp: a writable volume, not the image.
            [tmp] = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert "emptyDir" in volumes[tmp["name"]]
    sidecar = manifest["spec"]["rayClusterConfig"]["autoscalerOptions"]["securityContext"]
    assert sidecar["allowPrivilegeEscalation"] is False and sidecar["readOnlyRootFilesystem"] is True


def _admits(policy: dict[str, Any], port: int, peer: dict[str, dict[str, str]]) -> bool:
    """Whether the policy lets a peer reach `port` on tracemill's pods. `peer` is
    {"namespace": labels, "pod": labels, "same_namespace": ...}: a model of the NetworkPolicy
    rules this generator uses (matchLabels selectors only)."""
    def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())

    for rule in policy["spec"]["ingress"]:
        ports = [p["port"] for p in rule.get("ports", [])]
        if ports and port not in ports:
            continue
        if "from" not in rule:
            return True
        for source in rule["from"]:
            ns_ok = matches(source["namespaceSelector"], peer["namespace"]) if "namespaceSelector" in source \
                else peer["same_namespace"]
            pod_ok = matches(source["podSelector"], peer["pod"]) if "podSelector" in source else True
            if ns_ok and pod_ok:
                return True
    return False


def test_network_policy_keeps_the_control_ports_for_operators_and_serve_open() -> None:
    policy = committed_policy()
    assert policy["apiVersion"] == "networking.k8s.io/v1" and policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["metadata"]["namespace"] == committed_manifest()["metadata"]["namespace"]
    # It selects every Ray pod of the service (the labels both pod templates carry).
    for template in _pod_templates(committed_manifest()):
        assert all(template["metadata"]["labels"].get(k) == v
                   for k, v in policy["spec"]["podSelector"]["matchLabels"].items())
    stranger = {"namespace": {"kubernetes.io/metadata.name": "apps"}, "pod": {"app": "web"}, "same_namespace": False}
    neighbour = {"namespace": {}, "pod": {"app": "debug"}, "same_namespace": True}
    operator_ns = {"namespace": {kuberay.OPERATOR_LABEL: "true"}, "pod": {"app": "kuberay-operator"},
                   "same_namespace": False}
    operator_pod = {"namespace": {}, "pod": {kuberay.OPERATOR_LABEL: "true"}, "same_namespace": True}
    ray_pod = {"namespace": {}, "pod": {"app.kubernetes.io/name": "tracemill"}, "same_namespace": True}
    for port in (8265, 6379, 10001, 52365):  # dashboard / Jobs API, GCS, Ray client, dashboard agent
        assert not _admits(policy, port, stranger) and not _admits(policy, port, neighbour), port
        assert _admits(policy, port, ray_pod), port
    for port in kuberay.CONTROL_PORTS.values():
        assert _admits(policy, port, operator_ns) and _admits(policy, port, operator_pod), port
    assert not _admits(policy, 52365, operator_ns)  # the agents are reached through the dashboard
    for peer in (stranger, neighbour, operator_ns, ray_pod):
        assert _admits(policy, kuberay.SERVE_PORT, peer)
    assert not _admits(policy, kuberay.METRICS_PORT, stranger)
    assert _admits(policy, kuberay.METRICS_PORT, {"namespace": {"tracemill.io/metrics-scraper": "true"},
                                                  "pod": {}, "same_namespace": False})
