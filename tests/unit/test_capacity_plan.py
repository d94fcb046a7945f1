"""The capacity plan computed from results/*.json: the arithmetic, the newest figures preferred,
and the shipped results folder still readable."""

from __future__ import annotations

import json
import math
from pathlib import Path

from cluster.bench.capacity import format_plan, plan, stages


def write(folder: Path, name: str, record: dict) -> None:
    (folder / f"{name}.json").write_text(json.dumps({"when": "2026-12-07T21:00:00Z", **record}))


def results(folder: Path, with_stages: bool) -> Path:
    write(folder, "load", {"baselines": {"raw_upserts_rows_per_s": 100_000}})
    write(folder, "screenshots", {"cores": 2, "frames_per_s": {"pipeline_png": 6.0, "pipeline_webp": 40.0}})
    write(folder, "finalize", {"events": 200, "screenshots": 40, "median_finish_to_final_s": 1.5,
                               "pool_compress_same_frames_s": 1.0})
    write(folder, "extension", {"person_paced_minute": {"events": 35, "extension_payload_bytes": {
        "events": 35_000, "screenshots": 150_000}}})
    if with_stages:
        write(folder, "ingest_stages", {"workloads": {"clicks with varied text": {
            "after": {"ingress: parse + validate (one pass)": 10.0, "ingress: redact + encode": 30.0,
                      "actor call: pickle + unpickle": 4.0},
            "shard": {"shard: order, de-duplicate, commit, ack (CPU)": 18.0, "commit: PostgreSQL transactions (wall)": 9.0}}}})
    return folder


def test_load_cores_and_volume_follow_from_the_figures(tmp_path: Path) -> None:
    result = plan(results(tmp_path, with_stages=True), (1_000, 50_000), utilisation=0.5,
                  session_minutes=10, hours_per_day=8)
    small, big = result["sizes"]
    assert small["load_per_s"]["events"] == round(1_000 * 35 / 60, 1)
    assert small["load_per_s"]["frames"] == 50.0 and big["load_per_s"]["frames"] == 2_500.0
    per_core = {s["name"]: s["per_core_per_s"] for s in result["stages"]}
    ingress = next(n for n in per_core if n.startswith("ingress"))
    assert per_core[ingress] == 1e6 / 42  # ingress stages + half the hop
    assert big["cores"][ingress] == round(50_000 * 35 / 60 / (1e6 / 42 * 0.5), 1)
    webp = next(n for n in per_core if n.startswith("screenshots: WebP"))
    assert per_core[webp] == 20.0 and big["cores"][webp] == 250.0  # 2,500 frames/s at 10 a core
    # The PNG row is shown but not summed into the task CPUs: the extension uploads WebP.
    finalize = big["cores"]["finalize: vision, scoring, archive"]
    assert big["replicas"]["task CPUs"] == math.ceil(250.0 + finalize)
    assert big["replicas"]["ingress replicas"] == math.ceil(big["cores"][ingress])
    assert big["saturates_first"] == webp
    assert big["postgres"]["event_gb_per_day"] == round(50_000 * 35 / 60 * 1_000 * 8 * 3600 / 1e9, 1)
    assert big["postgres"]["rows_per_s"] == round(50_000 * 35 / 60 + 3 * 2_500 + 50_000 / 600)
    assert "results/ingest_stages.json 2026-12-07" in next(s["source"] for s in result["stages"] if s["name"] == ingress)


def test_the_whole_event_path_scales_ingress_and_shard_up(tmp_path: Path) -> None:
    folder = results(tmp_path, with_stages=True)
    # 60 µs an event on the whole path against 42 + 20 µs of stages: no scaling down.
    write(folder, "load_n100", {"when": "2026-12-07T22:00:00Z", "machine": {"cpus": 2},
                                "baselines": {"raw_upserts_rows_per_s": 50_000},
                                "runs": [{"sessions": 100, "tracemill_stream_only": {"events_per_s": 2 * 1e6 / 60}}]})
    assert plan(folder)["event_path_overhead"] == 1.0
    write(folder, "load_n100", {"when": "2026-12-07T22:00:00Z", "machine": {"cpus": 2},
                                "baselines": {"raw_upserts_rows_per_s": 50_000},
                                "runs": [{"sessions": 100, "tracemill_stream_only": {"events_per_s": 2 * 1e6 / 124}}]})
    result = plan(folder, (10_000,), utilisation=1.0)
    assert result["event_path_overhead"] == 2.0  # 124 µs whole against 62 µs of stages
    ingress = next(s for s in result["stages"] if s["name"].startswith("ingress"))
    assert result["sizes"][0]["cores"][ingress["name"]] == round(10_000 * 35 / 60 / ingress["per_core_per_s"] * 2, 1)
    pg = next(s for s in result["stages"] if s["runs_in"] == "PostgreSQL cores")
    assert pg["per_core_per_s"] == 25_000 and "load_n100.json" in pg["source"]  # the newest load run


def test_without_stage_figures_the_readme_figures_stand_in(tmp_path: Path) -> None:
    names = [s.name for s in stages(results(tmp_path, with_stages=False))]
    assert names[0].startswith("ingress") and names[1].startswith("shard")
    assert "README ingest figure" in stages(tmp_path)[0].source


def test_the_shipped_results_make_a_plan() -> None:
    folder = Path(__file__).resolve().parents[2] / "results"
    result = plan(folder)
    assert [s["people"] for s in result["sizes"]] == [1_000, 10_000, 50_000]
    table = format_plan(result)
    assert "50,000 recorders" in table and "saturates first" in table
