"""Each unit test runs without the caller's settings (tests/own_environment.py), even when the caller exports
the variables WebUI users have set, and huggingface_hub was imported before the test began."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants as hub_constants  # imported at collection, under the caller's environment

from lib_lcm.weights.hub_env import hub_offline
from tests import own_environment

ROOT = Path(__file__).resolve().parents[1]
CALLERS_SETTINGS = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9/",
    "HUGGINGFACE_HUB_CACHE": "/nonexistent/hub-cache", "LCM_LORA_REGISTRY": "/nonexistent/registry.json",
    "LCM_LORA_DOWNLOAD": "none", "COMMANDLINE_ARGS": "--lora-dir /nonexistent/Lora",
    "SD_WEBUI_DIR": "/nonexistent/webui", "PYTHONPATH": "/nonexistent/webui",
}


def test_no_callers_variable_reaches_the_test():
    assert own_environment.callers_variables(os.environ) == ["HF_HOME"]  # the test's own, below
    assert not hub_offline()


def test_home_and_caches_are_the_tests_own():
    home = Path(os.environ["HOME"])
    assert home != Path(own_environment.CALLER.get("HOME", "/nonexistent")) and home.is_dir()
    assert os.environ["XDG_CACHE_HOME"] == str(home / ".cache")
    assert os.environ["HF_HOME"] == str(home / ".cache" / "huggingface")
    assert Path("~").expanduser() == home


def test_huggingface_hub_sees_the_tests_environment_though_imported_before_it():
    assert hub_constants.HF_HUB_OFFLINE is False
    assert hub_constants.HF_HOME == os.environ["HF_HOME"]
    assert hub_constants.ENDPOINT == "https://huggingface.co"
    assert Path(hub_constants.HF_HUB_CACHE).is_relative_to(os.environ["HOME"])


def test_a_caller_with_webui_users_settings_changes_no_result(tmp_path):
    """The suite's own environment tests and a download from the local fake hub, under a caller's environment
    like a WebUI user's shell (HF_HUB_OFFLINE=1 and friends); this test excludes itself from that run."""
    env = {**own_environment.CALLER, **CALLERS_SETTINGS}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "inner"),
         "tests/test_own_environment.py", "-k", "not webui_users_settings",
         "tests/test_download.py::test_fresh_download_installs_verified_file_with_card_and_record"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "\n5 passed," in done.stdout, done.stdout[-2000:]
