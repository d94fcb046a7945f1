"""The autoscaling demo's generated configs (cluster/autoscale/demo.py), checked without starting
anything: the demo itself takes minutes and owns port 6379, so it is run by hand
(`python -m cluster.autoscale`), not here."""

import copy
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import validate_config
from ray.serve.schema import ServeDeploySchema

from cluster.autoscale import demo
from configs.settings import load_yaml


def written(tmp_path: Path, **kwargs: float) -> dict:
    path = demo.write_autoscaling_config(tmp_path / "autoscaling.yaml", demo.autoscaling_config(**kwargs))
    return yaml.safe_load(path.read_text())


def test_the_written_file_parses_back_to_the_config_and_passes_rays_validator(tmp_path: Path) -> None:
    config = written(tmp_path)
    assert config == demo.autoscaling_config()
    # The monitor validates with this schema; the fake provider's defaults file is not in the
    # wheel, so every key must be there already (validate_config insists on some of them).
    validate_config(copy.deepcopy(config))


def test_fake_multinode_provider_with_node_ids_as_ips(tmp_path: Path) -> None:
    provider = written(tmp_path)["provider"]
    assert provider["type"] == "fake_multinode"
    assert provider["use_node_id_as_ip"] is True
    assert provider["disable_node_updaters"] is True


def test_head_has_no_cpus_so_work_goes_to_workers(tmp_path: Path) -> None:
    config = written(tmp_path)
    # The fake provider tags its head with this type whatever the config says.
    assert config["head_node_type"] == demo.HEAD_NODE_TYPE == "ray.head.default"
    head = config["available_node_types"][demo.HEAD_NODE_TYPE]
    assert head["resources"]["CPU"] == 0
    assert head["min_workers"] == head["max_workers"] == 0


def test_the_gcs_address_is_named_to_the_provider_only_off_the_default_port(tmp_path: Path) -> None:
    assert "gcs_address" not in written(tmp_path)["provider"]  # the provider's default: <node ip>:6379
    config = demo.autoscaling_config(gcs_address="10.0.0.5:40001")
    assert config["provider"]["gcs_address"] == "10.0.0.5:40001"
    validate_config(copy.deepcopy(config))
    cmd = demo.head_command(tmp_path / "a.yaml", tmp_path / "ray", ray_client_port=1, port=40001)
    assert "--port=40001" in cmd and "--port=6379" not in cmd


def test_one_worker_type_cpu2_between_zero_and_three(tmp_path: Path) -> None:
    config = written(tmp_path)
    workers = {k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]}
    assert list(workers) == [demo.WORKER_NODE_TYPE] == ["cpu2"]
    cpu2 = workers["cpu2"]
    assert cpu2["resources"]["CPU"] == 2
    assert cpu2["min_workers"] == 0
    assert cpu2["max_workers"] == 3 <= config["max_workers"]
    assert written(tmp_path, max_workers=5)["available_node_types"]["cpu2"]["max_workers"] == 5


@pytest.mark.parametrize(("seconds", "minutes"), [(30, 0.5), (45, 0.75), (6, 0.1), (300, 5.0)])
def test_idle_timeout_is_fractional_minutes(tmp_path: Path, seconds: float, minutes: float) -> None:
    config = written(tmp_path, idle_timeout_s=seconds)
    assert config["idle_timeout_minutes"] == pytest.approx(minutes)
    validate_config(copy.deepcopy(config))  # the schema's type is "number", not "integer"


def test_idle_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        demo.autoscaling_config(idle_timeout_s=0)


def test_head_command_uses_the_default_gcs_port_no_head_cpus_and_its_own_temp_dir(tmp_path: Path) -> None:
    cmd = demo.head_command(tmp_path / "a.yaml", tmp_path / "ray", ray_client_port=12345)
    assert cmd[1:3] == ["start", "--head"]
    assert "--port=6379" in cmd and demo.GCS_PORT == 6379  # the fake workers always join :6379
    assert "--num-cpus=0" in cmd
    assert f"--autoscaling-config={tmp_path / 'a.yaml'}" in cmd
    assert f"--temp-dir={tmp_path / 'ray'}" in cmd  # never /tmp/ray: `ray.init()` elsewhere must not find it
    assert "--include-dashboard=false" in cmd
    assert cmd[-1] == "--block"


def test_head_env_turns_the_fake_cluster_on_and_drops_addresses() -> None:
    env = demo.head_env({"PATH": "/bin", "RAY_ADDRESS": "10.0.0.1:6379", "RAY_SERVE_ENABLE_HA_PROXY": "1"})
    assert env["RAY_FAKE_CLUSTER"] == "1"
    assert env["AUTOSCALER_UPDATE_INTERVAL_S"] == "1"
    assert env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] == "0"  # else the stop waits out a 30 s drain
    assert "RAY_ADDRESS" not in env and "RAY_SERVE_ENABLE_HA_PROXY" not in env
    assert env["PATH"] == "/bin"


def test_demo_serve_config_lowers_only_the_target_and_delays() -> None:
    original = load_yaml(Path(demo.REPO) / "configs" / "serve.yaml")
    rendered = demo.demo_serve_config(target_ongoing_requests=50)
    ServeDeploySchema.model_validate(rendered)

    def ingress(config: dict) -> dict:
        [app] = config["applications"]
        return next(d for d in app["deployments"] if d["name"] == "Ingress")

    before, after = ingress(original)["autoscaling_config"], ingress(rendered)["autoscaling_config"]
    assert (after["min_replicas"], after["max_replicas"]) == (before["min_replicas"], before["max_replicas"])
    assert after["target_ongoing_requests"] == 50 < before["target_ongoing_requests"]
    assert ingress(original) != ingress(rendered) and original == load_yaml(Path(demo.REPO) / "configs" / "serve.yaml")
