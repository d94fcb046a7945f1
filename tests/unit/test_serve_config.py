"""The Serve config `up` deploys: the shipped file renders and validates; broken ones are refused
with the file named, before anything starts."""

from pathlib import Path

import pytest

from cluster.serve_deploy import APP_NAME, DEFAULT_SERVE_CONFIG, render_serve_config
from configs.settings import SettingsError, TracemillSettings


def settings(tmp_path: Path) -> TracemillSettings:
    return TracemillSettings.build({"database": {"url": "postgresql://u:pw@db/x"},
                                    "object_store": {"kind": "local", "local_dir": str(tmp_path)}})


def test_shipped_config_renders_with_runtime_values(tmp_path: Path) -> None:
    config = render_serve_config(settings(tmp_path), host="127.0.0.1", port=8123, secrets_file=tmp_path / "s.json")
    assert config["http_options"]["host"] == "127.0.0.1" and config["http_options"]["port"] == 8123
    [app] = [a for a in config["applications"] if a["name"] == APP_NAME]
    assert app["import_path"] == "serve_app.app:build_app"
    # The dashboard shows args and runtime env to anyone: the settings without the DSN, and
    # only the name of the file that holds it.
    assert "url" not in app["args"]["database"] and "pw" not in str(config)
    assert app["runtime_env"]["env_vars"] == {"TRACEMILL_SECRETS_FILE": str(tmp_path / "s.json")}
    [ingress] = [d for d in app["deployments"] if d["name"] == "Ingress"]
    assert ingress["max_ongoing_requests"] >= 1000 and ingress["ray_actor_options"]["num_cpus"] < 1
    assert ingress["autoscaling_config"]["min_replicas"] >= 1
    assert "args: {}" in DEFAULT_SERVE_CONFIG.read_text()  # secrets are filled in at start, never stored


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("applications: [", "not valid YAML"),
        ("applications: []\n", "exactly one application"),
        (f"applications:\n  - name: {APP_NAME}\n    import_path: x:y\n    route_prefix: 5\n", "not a valid Serve config"),
    ],
)
def test_broken_configs_are_refused_naming_the_file(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=fragment) as info:
        render_serve_config(settings(tmp_path), host="127.0.0.1", port=8000, path=path)
    assert "serve.yaml" in str(info.value)
