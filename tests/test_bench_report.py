"""bench/report.py renders docs/speed.md's tables from the benches' JSON lines: every figure from the files,
none lost."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import report  # noqa: E402

MACHINE = {"cpu": "Test CPU", "cores": 2, "torch_threads": "1", "webui": "1.10.1", "date": "2026-12-01"}


def speed_result(model: str, repeats: int, medians: dict, unet: dict, ratios: dict) -> dict:
    return {"bench": "webui_speed", "model": model, "repeats": repeats, "machine": MACHINE,
            "median_seconds": medians, "unet": unet, "ratios": ratios}


@pytest.fixture
def results(tmp_path) -> Path:
    speed = speed_result(
        "slim", 3,
        {"ours_cfg1@64px/4": 4.5, "builtin_lcm_cfg1@64px/4": 10.25, "euler_a_cfg7@64px/20": 50.0,
         "ours_cfg1@256px/4": 17.4, "builtin_lcm_cfg1@256px/4": 28.0, "euler_a_cfg7@256px/20": 144.0},
        {"ours_cfg1/4": {"calls": 4, "rows": 4}, "builtin_lcm_cfg1/4": {"calls": 4, "rows": 8},
         "euler_a_cfg7/20": {"calls": 20, "rows": 40}},
        {"ours_cfg1/builtin_lcm_cfg1@64": 4.5 / 10.25, "euler_a_20_cfg7/ours_cfg1@64": 50 / 4.5,
         "ours_cfg1/builtin_lcm_cfg1@256": 17.4 / 28.0, "euler_a_20_cfg7/ours_cfg1@256": 144 / 17.4},
    )
    ratio = speed_result("slim", 7, {"ours_cfg1@256px/4": 17.0, "builtin_lcm_cfg1@256px/4": 30.0},
                         {"ours_cfg1/4": {"calls": 4, "rows": 4}, "builtin_lcm_cfg1/4": {"calls": 4, "rows": 8}},
                         {"ours_cfg1/builtin_lcm_cfg1@256": 17 / 30})
    (tmp_path / "speed-slim.json").write_text(json.dumps(speed) + "\n")
    (tmp_path / "ratio-slim.json").write_text(json.dumps(ratio) + "\n")
    return tmp_path


def test_speed_table_has_every_configuration_its_seconds_and_unet_counts(results):
    text = report.render(results)
    assert "| LCM-LoRA sampler (this extension), CFG 1 | 4 | 4.50 s | 17.40 s | 4 / 4 |" in text
    assert "| Euler a, CFG 7 | 20 | 50.00 s | 144.00 s | 20 / 40 |" in text
    assert "host's \"LCM\" + LoRA typed in the prompt, CFG 1 | 4 | 10.25 s | 28.00 s | 4 / 8 |" in text


def test_ratios_keep_each_run_in_its_own_column(results):
    table = report.render(results).split("Ratios:")[1]
    header = table.strip().splitlines()[0]
    assert header == "| ratio | slim 64², n=3 | slim 256², n=3 | slim 256², n=7 | target |"
    assert "| ours @ CFG 1 / host's LCM @ CFG 1 (time per image) | 0.44 | 0.62 | 0.57 | ≤ 0.6 at 256² (slim) |" in table
    assert "| 11.1× | 8.3× | — | ≥ 8× |" in table  # the ratio run has no Euler a: a dash, not a zero
    assert "extension overhead" not in table  # no CFG 1.5 figures in these files: no empty row


def test_missing_files_leave_their_tables_out(tmp_path):
    assert report.render(tmp_path).strip() == ""
    (tmp_path / "install-noop.json").write_text(json.dumps({
        "runs": 9, "checkpoints": 20, "python": "3.11.7", "python_startup_s": 0.069, "auto_s": 0.109,
        "auto_uncached_s": 0.186, "all_s": 0.081, "sha256_sd15_s": 0.12, "sha256_sdxl_s": 0.34}) + "\n")
    text = report.render(tmp_path)
    assert "| install.py no-op, default policy (checkpoint labels cached) | 109 |" in text
    assert "| sha256 (first launch after a manual download): SD1.5 / SDXL LoRA | 120 / 340 |" in text
    assert "Ratios" not in text


def test_memory_table_shows_the_peak_ratio_and_first_use_costs(tmp_path):
    backup = {"fp16_mb": 100.0, "fp32_mb": 200.0, "elements": 1}
    (tmp_path / "memory-slim.json").write_text(json.dumps({
        "bench": "webui_memory", "model": "slim", "size": 256, "machine": MACHINE,
        "rss_mb": {"after_generation_without_lora": 5000.0, "after_lcm_lora_applied": 5400.0, "lora_cost": 400.0},
        "backup_computed": {"sd15": backup, "sdxl": dict(backup, fp16_mb=300.0, fp32_mb=600.0), "slim": backup},
        "peak_rss_mb": {"ours": 6000.0, "builtin_lcm_typed_lora": 6100.0},
        "peak_rss_ratio_ours_over_builtin": 6000 / 6100,
        "first_use_seconds": {"lora_weight_change": 1.5, "enable_to_image_with_verification": 20.0,
                              "verification_added": 0.25, "steady_image": 19.75},
    }) + "\n")
    text = report.render(tmp_path)
    assert "| … after the LCM-LoRA is applied (weight backup + LoRA) | 5400 MB (+400 MB) |" in text
    assert "| computed weight backup, SDXL UNet (fp16 / fp32) | 300 / 600 MB |" in text
    assert "| peak RSS ours / host's (target ≤ 1.05) | 0.984 |" in text
    assert "| first use: switch on → image, weights verified first | 20.00 s (verification adds 0.25 s) |" in text


def test_steps_sweep_is_split_into_per_step_and_fixed_cost(tmp_path):
    # 1 UNet row per step costs 4 s, 2 rows 7 s, 1 s per image besides: the fit gives back exactly those
    medians = {f"ours_cfg1@256px/{n}": 1 + 4 * n for n in (2, 4, 6, 8)}
    medians.update({f"builtin_lcm_cfg1@256px/{n}": 1 + 7 * n for n in (2, 4, 6, 8)})
    sweep = speed_result("slim", 1, medians, {"ours_cfg1/8": {"calls": 8, "rows": 8},
                                              "builtin_lcm_cfg1/8": {"calls": 8, "rows": 16}}, {})
    (tmp_path / "steps-slim.json").write_text(json.dumps(sweep) + "\n")
    text = report.render(tmp_path)
    assert "| LCM-LoRA sampler (this extension), CFG 1 | 256² | 4.00 s | 1.00 s | 1 |" in text
    assert "| host's \"LCM\" + LoRA typed in the prompt, CFG 1 | 256² | 7.00 s | 1.00 s | 2 |" in text
