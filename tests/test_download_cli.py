"""`python -m lib_lcm download|status`: outcomes and exit codes, against the fake hub."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lib_lcm.weights import errors
from tests.fakehub import FakeHub, SilentListener, refused_url
from tests.test_download import Site

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def site(tmp_path):
    with FakeHub() as hub:
        site = Site(hub, tmp_path)
        site.lora_dir.mkdir(parents=True)
        yield site


def cli(site: Site, *args: str, **env) -> subprocess.CompletedProcess:
    environment = site.env()
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "lib_lcm", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=120)


def test_download_then_status(site):
    done = cli(site, "download", "--variant", "sd15,sdxl", "--lora-dir", str(site.lora_dir), "--progress-lines")
    assert done.returncode == 0, done.stderr
    assert f"sd15 ready: {site.final('sd15')}" in done.stdout and "LCM-LoRA: Downloading test-sdxl: 100% of" in done.stdout
    assert site.final("sdxl").read_bytes() == site.payload["sdxl"]
    status = cli(site, "status", "--json", "--lora-dir", str(site.lora_dir))
    rows = {row["variant"]: row for row in json.loads(status.stdout)}
    assert rows["sd15"]["verified"] and rows["sdxl"]["verified"] and not rows["ssd1b"]["installed"]
    assert status.returncode == 1  # ssd1b is missing
    assert cli(site, "status", "-v", "sd15,sdxl", "--lora-dir", str(site.lora_dir)).returncode == 0


@pytest.mark.parametrize("setup, args, env, code, words", [
    ("none", ["-v", "sd3"], {}, 2, "unknown variant sd3"),
    ("none", [], {"HF_HUB_OFFLINE": "1"}, 3, "HF_HUB_OFFLINE"),
    ("404", [], {}, 4, "not found"),
    ("corrupt", [], {}, 5, "failed verification"),
    ("none", [], {"LCM_LORA_REGISTRY": "/nonexistent/registry.json"}, 2, "cannot read"),
])
def test_failures_exit_with_their_code_and_one_message(site, setup, args, env, code, words):
    site.hub.status = 404 if setup == "404" else None
    site.hub.corrupt = setup == "corrupt"
    done = cli(site, "download", "--lora-dir", str(site.lora_dir), *(args or ["-v", "sd15"]), **env)
    assert done.returncode == code, done.stdout + done.stderr
    assert words in done.stderr and "Traceback" not in done.stderr
    assert not site.final().exists()


def test_filesystem_failure_exit_code(site, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    done = cli(site, "download", "-v", "sd15", "--lora-dir", str(blocker / "Lora"), "--create-lora-dir")
    assert done.returncode == errors.WeightsFilesystemError.exit_code == 6
    assert "Traceback" not in done.stderr


def test_progress_lines_print_once_per_tenth_in_the_shared_wording(capsys):
    from lib_lcm.__main__ import _ProgressLines

    lines = _ProgressLines("lcm-lora-sdv1-5")
    total = 134_621_556
    for done in (0, total // 20, total // 10 + 1, total // 10 + 5, total * 36 // 100, total):
        lines(done, total)
    lines(total, None)  # no total: no tenths to count
    assert capsys.readouterr().out.splitlines() == [
        "LCM-LoRA: Downloading lcm-lora-sdv1-5: 10% of 134.6 MB",
        "LCM-LoRA: Downloading lcm-lora-sdv1-5: 35% of 134.6 MB",
        "LCM-LoRA: Downloading lcm-lora-sdv1-5: 100% of 134.6 MB",
    ]


def test_status_tells_a_wrong_size_from_a_file_not_yet_verified(site):
    wrong, unhashed = site.final("sd15"), site.final("sdxl")
    wrong.parent.mkdir(parents=True)
    wrong.write_bytes(b"not a LoRA")
    unhashed.write_bytes(site.payload["sdxl"])
    done = cli(site, "status", "--lora-dir", str(site.lora_dir))
    lines = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert f"wrong size (10 bytes, expected {len(site.payload['sd15'])})" in lines["sd15"]
    assert "present, not verified yet (run download to verify)" in lines["sdxl"]
    assert lines["ssd1b"].split()[1] == "missing" and done.returncode == 1


@pytest.mark.parametrize("network", ["refused", "silent"])
def test_a_hub_that_cannot_be_reached_stops_the_other_variants_with_one_line(site, network):
    cli(site, "download", "-v", "sdxl", "--lora-dir", str(site.lora_dir))  # installed before the outage
    with SilentListener() as silent:
        endpoint = silent.url if network == "silent" else refused_url()
        done = cli(site, "download", "--lora-dir", str(site.lora_dir), "--timeout", "1", HF_ENDPOINT=endpoint)
    assert done.returncode == errors.WeightsNetworkError.exit_code == 3, done.stderr
    errors_seen = [line for line in done.stderr.splitlines() if line.startswith("LCM-LoRA: ")]
    reason = "connection refused" if network == "refused" else "no answer within 1 s"
    assert errors_seen[0].startswith("LCM-LoRA: sd15: ") and len(errors_seen) == 2, errors_seen
    assert errors_seen[1] == (f"LCM-LoRA: the hub at {endpoint} cannot be reached ({reason}); "
                              "not trying ssd1b; retry later.")
    assert f"sdxl ready: {site.final('sdxl')}" in done.stdout
    assert list(site.lora_dir.rglob("*.lock")) == []
