"""A KubeRay `RayService` manifest for tracemill, rendered from configs/serve.yaml.

The Serve application, its deployments and their options live in one file, configs/serve.yaml,
which `tracemill up` and `tracemill deploy` apply directly; this module embeds the same file in
`spec.serveConfigV2` so Kubernetes runs exactly what the other paths run. Only two things
change on the way, both because a pod is not a laptop:

- `http_options` listen on 0.0.0.0:8000: KubeRay's Serve Service and health checks reach the
  proxy through the pod IP, never through loopback;
- the application's `args` stay empty: a manifest is stored in etcd, shown by `kubectl get -o
  yaml` and committed to git, so it must hold no secret. Settings come from the Secret that
  every Ray container imports with `envFrom`, and the Serve app builder reads them from the
  pod environment (`TracemillSettings.from_env()`) when `args` is empty.

Beside the RayService the file holds a NetworkPolicy: the dashboard / Jobs API (8265), the Ray
client (10001) and the GCS (6379) run arbitrary code for whoever reaches them, so only Ray's own
pods and pods or namespaces labelled as operators may; the Serve port stays open. Containers run
as non-root with a read-only root filesystem, no capabilities and no privilege escalation, and
the image is pinned by digest (a tag can be moved to other code under the same name).

    python -m cluster.kuberay --image ghcr.io/acme/tracemill:0.1.0@sha256:<digest> --output rayservice.yaml
"""

from __future__ import annotations

import argparse
import copy
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
import yaml
from ray.serve.schema import ServeDeploySchema

from cluster.local import THROUGHPUT_ENV
from serve_app.serve_hooks import CALLBACK_ENV
from cluster.serve_deploy import APP_NAME, DEFAULT_SERVE_CONFIG
from configs.settings import SettingsError, load_yaml

__all__ = [
    "CONTROL_PORTS", "EXAMPLE_IMAGE", "EXAMPLE_MANIFEST", "METRICS_PORT", "OPERATOR_LABEL", "SERVE_PORT",
    "kubernetes_serve_config", "main", "render_manifests", "render_network_policy", "render_rayservice",
    "render_yaml",
]

# A made-up digest: the example shows the form; a real render names the image's own digest.
EXAMPLE_IMAGE = ("ghcr.io/example/tracemill:0.1.0"
                 "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
EXAMPLE_MANIFEST = Path(__file__).resolve().parent / "deploy" / "kuberay-rayservice.yaml"
SERVE_PORT = 8000
# Ray's metrics agent exports every process's `ray.util.metrics` here (DESIGN.md decision 8);
# KubeRay's PodMonitor and the prometheus.io annotations below both point at it.
METRICS_PORT = 8080
WORKER_GROUP = "cpu"
# Ports that run code or control the cluster for whoever reaches them: GCS, dashboard / Jobs API,
# Ray client. Only Ray's pods and operators may connect (render_network_policy).
CONTROL_PORTS = {"gcs-server": 6379, "dashboard": 8265, "client": 10001}
# Label a namespace (the KubeRay operator's, an admin tool's) or a pod in tracemill's namespace
# with this to let it reach CONTROL_PORTS.
OPERATOR_LABEL = "tracemill.io/ray-operator"
# Label the namespace Prometheus scrapes from with this to let it reach METRICS_PORT.
METRICS_LABEL = "tracemill.io/metrics-scraper"
# The rayproject/ray images' `ray` user and `users` group.
RAY_UID, RAY_GID = 1000, 100
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")

# Pod sizes. The head hosts GCS, the dashboard, the Serve controller and proxy, the ingress
# replicas and the session shards; `num-cpus` is pinned to the container's CPUs so the
# fractional actors (DESIGN.md decision 5) leave room for a WebP task there too. Workers take
# the CPU-heavy tasks (compress, redact, vision, archive): 1 CPU each.
HEAD_RESOURCES = {"cpu": "2", "memory": "8Gi"}
WORKER_RESOURCES = {"cpu": "4", "memory": "8Gi"}

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def kubernetes_serve_config(path: Path = DEFAULT_SERVE_CONFIG) -> dict[str, Any]:
    """configs/serve.yaml as a pod runs it: HTTP on all interfaces, no `args`, validated."""
    config = copy.deepcopy(load_yaml(path))
    config.setdefault("http_options", {}).update({"host": "0.0.0.0", "port": SERVE_PORT})
    apps = [a for a in config.get("applications") or [] if a.get("name") == APP_NAME]
    if len(apps) != 1:
        raise SettingsError(f"{path}: expected exactly one application named {APP_NAME!r}")
    # Always empty, whatever the file says: any value here would be stored in the manifest.
    apps[0]["args"] = {}
    try:
        ServeDeploySchema.model_validate(config)
    except Exception as exc:  # noqa: BLE001 - Serve's schema errors, reported with the file name
        raise SettingsError(f"{path}: not a valid Serve config: {exc}") from None
    return config


def render_rayservice(
    serve_config_path: Path = DEFAULT_SERVE_CONFIG,
    *,
    image: str,
    namespace: str = "tracemill",
    secret_name: str = "tracemill-env",
    worker_min: int = 1,
    worker_max: int = 10,
    allow_unpinned_image: bool = False,
) -> dict[str, Any]:
    """The RayService (apiVersion ray.io/v1) that runs tracemill's Serve app on KubeRay."""
    _check_inputs(image=image, namespace=namespace, secret_name=secret_name,
                  worker_min=worker_min, worker_max=worker_max, allow_unpinned_image=allow_unpinned_image)
    serve_config = kubernetes_serve_config(Path(serve_config_path))
    labels = {"app.kubernetes.io/name": "tracemill", "app.kubernetes.io/part-of": "tracemill"}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "tracemill", "namespace": namespace, "labels": labels},
        "spec": {
            # KubeRay wants the Serve config as one YAML string, not as a nested object.
            "serveConfigV2": yaml.safe_dump(serve_config, sort_keys=False),
            "rayClusterConfig": {
                # The image's Ray must be this version; KubeRay picks its commands by it.
                "rayVersion": ray.__version__,
                # Token auth for GCS and the dashboard (KubeRay >= 1.5.1 makes the token
                # Secret and sets RAY_AUTH_MODE/RAY_AUTH_TOKEN in every Ray container).
                "authOptions": {"mode": "token"},
                "enableInTreeAutoscaling": True,
                "autoscalerOptions": {
                    # Same idle timeout as the `ray up` cluster (idle_timeout_minutes: 5).
                    "idleTimeoutSeconds": 300,
                    "upscalingMode": "Default",
                    # The autoscaler sidecar KubeRay adds to the head: as locked down as Ray's.
                    "securityContext": _container_security(),
                },
                "headGroupSpec": {
                    "rayStartParams": {
                        # KubeRay's operator reaches the dashboard through the head Service to
                        # submit serveConfigV2, so it cannot stay on loopback as on a VM.
                        "dashboard-host": "0.0.0.0",
                        "num-cpus": HEAD_RESOURCES["cpu"],
                        "metrics-export-port": str(METRICS_PORT),
                    },
                    "template": _pod_template("ray-head", image, secret_name, HEAD_RESOURCES, labels,
                                              head=True),
                },
                "workerGroupSpecs": [{
                    "groupName": WORKER_GROUP,
                    "replicas": worker_min,
                    "minReplicas": worker_min,
                    "maxReplicas": worker_max,
                    "rayStartParams": {"metrics-export-port": str(METRICS_PORT)},
                    "template": _pod_template("ray-worker", image, secret_name, WORKER_RESOURCES, labels,
                                              head=False),
                }],
            },
        },
    }


def _pod_template(name: str, image: str, secret_name: str, resources: dict[str, str],
                  labels: dict[str, str], *, head: bool) -> dict[str, Any]:
    ports = [{"containerPort": METRICS_PORT, "name": "metrics"}]
    if head:
        ports = [
            *({"containerPort": port, "name": port_name} for port_name, port in CONTROL_PORTS.items()),
            {"containerPort": SERVE_PORT, "name": "serve"},
            *ports,
        ]
    container = {
        "name": name,
        "image": image,
        # DATABASE_URL, TRACEMILL_KEY_PEPPER, TRACEMILL_S3_*, AWS_*, OPENAI_* arrive as environment
        # variables; the manifest names the Secret, never its values.
        "envFrom": [{"secretRef": {"name": secret_name}}],
        # Serve's throughput mode (DESIGN.md decision 4) and the proxy hook that replaces a request
        # id that is not short and plain must be in the environment of every Ray process, head
        # and workers alike, as `tracemill up` sets them locally.
        "env": [{"name": key, "value": value} for key, value in sorted({**THROUGHPUT_ENV, **CALLBACK_ENV}.items())],
        "ports": ports,
        # Requests equal to limits: Ray sizes itself from the limits, and a throttled or
        # evicted head takes every open WebSocket with it.
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "securityContext": _container_security(),
        # The root filesystem is read-only; Ray writes its session files, logs and spilled
        # objects under /tmp/ray, so /tmp is a volume of the pod's own.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "metadata": {
            "labels": dict(labels),
            # For annotation-driven Prometheus setups; with the Prometheus Operator use
            # KubeRay's PodMonitor instead (see cluster/deploy/README.md).
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(METRICS_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RAY_UID,
                "runAsGroup": RAY_GID,
                "fsGroup": RAY_GID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            # No Kubernetes API token in the pods: tracemill never calls the API server, and a
            # token there would hand whoever runs code in the cluster the pod's RBAC rights.
            "automountServiceAccountToken": False,
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def _container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def render_network_policy(namespace: str = "tracemill") -> dict[str, Any]:
    """Ingress to tracemill's Ray pods: the Serve port from anywhere; every port from the other
    Ray pods of the cluster (Ray's processes talk on many ports); the control ports (GCS,
    dashboard / Jobs API, Ray client) from operators only; metrics from a labelled scraper."""
    ray_pods = {"matchLabels": {"app.kubernetes.io/name": "tracemill"}}
    operators = [
        {"namespaceSelector": {"matchLabels": {OPERATOR_LABEL: "true"}}},
        {"podSelector": {"matchLabels": {OPERATOR_LABEL: "true"}}},  # in this namespace
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "tracemill-ray", "namespace": namespace,
                     "labels": {"app.kubernetes.io/part-of": "tracemill"}},
        "spec": {
            "podSelector": ray_pods,
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"protocol": "TCP", "port": SERVE_PORT}]},  # no `from`: open to all
                {"from": [{"podSelector": ray_pods}]},  # no `ports`: Ray's own traffic, all ports
                {"from": operators,
                 "ports": [{"protocol": "TCP", "port": port} for port in CONTROL_PORTS.values()]},
                {"from": [{"namespaceSelector": {"matchLabels": {METRICS_LABEL: "true"}}}],
                 "ports": [{"protocol": "TCP", "port": METRICS_PORT}]},
            ],
        },
    }


def render_manifests(serve_config_path: Path = DEFAULT_SERVE_CONFIG, **kwargs: Any) -> list[dict[str, Any]]:
    """Everything `kubectl apply -f` takes: the RayService, then its NetworkPolicy."""
    rayservice = render_rayservice(serve_config_path, **kwargs)
    return [rayservice, render_network_policy(rayservice["metadata"]["namespace"])]


def _check_inputs(*, image: str, namespace: str, secret_name: str, worker_min: int, worker_max: int,
                  allow_unpinned_image: bool) -> None:
    problems = []
    if not isinstance(image, str) or not image.strip():
        problems.append("image must name a container image with tracemill installed "
                        "(e.g. ghcr.io/acme/tracemill:0.1.0@sha256:<digest>)")
    elif any(ch.isspace() for ch in image):
        problems.append(f"image {image!r} contains whitespace")
    elif not _DIGEST.search(image) and not allow_unpinned_image:
        problems.append(f"image {image!r} is not pinned by digest: name it as <image>@sha256:<64 hex> "
                        "(`docker buildx imagetools inspect <image>` prints the digest), or pass "
                        "--allow-unpinned-image to accept whatever the tag points at when pods start")
    if not _DNS_LABEL.match(namespace or ""):
        problems.append(f"namespace {namespace!r} is not a valid Kubernetes name (lower-case letters, digits, '-')")
    if not _DNS_SUBDOMAIN.match(secret_name or ""):
        problems.append(f"secret name {secret_name!r} is not a valid Kubernetes name")
    for label, value in (("worker_min", worker_min), ("worker_max", worker_max)):
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{label} must be an integer, got {value!r}")
    if not problems:
        if worker_min < 0:
            problems.append(f"worker_min must be >= 0, got {worker_min}")
        if worker_max < 1:
            problems.append(f"worker_max must be >= 1, got {worker_max}")
        if worker_min > worker_max:
            problems.append(f"worker_min ({worker_min}) must not exceed worker_max ({worker_max})")
    if problems:
        raise SettingsError("cannot render the RayService: " + "; ".join(problems))


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (serveConfigV2) as `|` blocks, so the manifest stays reviewable."""

    def ignore_aliases(self, data: Any) -> bool:
        return True  # a repeated selector is written out again, not as a YAML anchor


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def render_yaml(manifests: list[dict[str, Any]], *, command: str) -> str:
    """The manifests as YAML documents under a header that says how they were made."""
    header = [
        "# GENERATED by `python -m cluster.kuberay` from configs/serve.yaml: do not edit by hand.",
        "# Re-render after changing configs/serve.yaml or cluster/kuberay.py:",
        f"#   {command}",
        "# Settings (DATABASE_URL, TRACEMILL_KEY_PEPPER, TRACEMILL_S3_*, AWS_*, OPENAI_*) come from",
        "# the Secret named in envFrom; see cluster/deploy/README.md.",
    ]
    body = yaml.dump_all(manifests, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)
    return "\n".join(header) + "\n" + body


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cluster.kuberay",
        description="Render tracemill's KubeRay RayService manifest from configs/serve.yaml.",
    )
    parser.add_argument("--image", required=True, help="container image with tracemill and Ray "
                        f"{ray.__version__} installed, pinned by digest (<image>@sha256:<digest>)")
    parser.add_argument("--allow-unpinned-image", action="store_true",
                        help="accept an image without @sha256: (its tag may later name other code)")
    parser.add_argument("--output", type=Path, help="write the manifest here (default: stdout)")
    parser.add_argument("--namespace", default="tracemill")
    parser.add_argument("--secret-name", default="tracemill-env",
                        help="Secret whose keys become the pods' environment (DATABASE_URL, ...)")
    parser.add_argument("--worker-min", type=int, default=1, help="minReplicas of the cpu worker group")
    parser.add_argument("--worker-max", type=int, default=10, help="maxReplicas of the cpu worker group")
    parser.add_argument("--serve-config", type=Path, default=DEFAULT_SERVE_CONFIG,
                        help="the Serve config to embed (default: configs/serve.yaml)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        manifests = render_manifests(
            args.serve_config, image=args.image, namespace=args.namespace, secret_name=args.secret_name,
            worker_min=args.worker_min, worker_max=args.worker_max,
            allow_unpinned_image=args.allow_unpinned_image,
        )
    except SettingsError as exc:
        print(f"cluster.kuberay: {exc}", file=sys.stderr)
        return 2
    text = render_yaml(manifests, command="python -m cluster.kuberay " + shlex.join(argv))
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.write_text(text)
    except OSError as exc:
        print(f"cluster.kuberay: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
