"""ensure_weights() through the real huggingface_hub client against a local fake hub (tests/fakehub.py).

Runs under whatever huggingface_hub the interpreter has; tests/test_download_hub2.py runs this module
again under the newest release.
"""
from __future__ import annotations

import errno
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import huggingface_hub.constants as hub_constants
import pytest

from lib_lcm.weights import errors, lora_files
from lib_lcm.weights.download import ensure_weights
from lib_lcm.weights.hub_errors import hub_unreachable
from lib_lcm.weights.lock import LockFile
from lib_lcm.weights.lora_files import STATE_FOLDER, LoraFiles, make_folders, weights_status
from lib_lcm.weights.registry import WeightsEntry, parse_registry
from tests.fakehub import (
    UNRESOLVABLE_URL,
    FakeHub,
    SilentListener,
    lora_bytes,
    refuse_invalid_hosts,
    refused_url,
    registry_json,
)

ROOT = Path(__file__).resolve().parents[1]
LISTED = (".pt", ".ckpt", ".safetensors")  # what the WebUI's Lora scanner lists, hidden folders included


def listed_by_webui(lora_dir: Path) -> list[Path]:
    return sorted(Path(r) / f for r, _, fs in os.walk(lora_dir) for f in fs if f.lower().endswith(LISTED))


class Site:
    """A fake hub holding three LCM-LoRA-like repos and a registry describing them."""

    def __init__(self, hub: FakeHub, tmp: Path):
        self.hub, self.tmp = hub, tmp
        self.lora_dir = tmp / "models" / "Lora"
        self.payload = {"sd15": lora_bytes(768, seed=1), "sdxl": lora_bytes(2048, seed=2), "ssd1b": lora_bytes(2048, seed=3)}
        files = {v: hub.add(f"test-org/lcm-{v}", "pytorch_lora_weights.safetensors", data)
                 for v, data in self.payload.items()}
        self.files = files
        self.document = registry_json({
            "sd15": {"repo_id": files["sd15"].repo_id, "revision": files["sd15"].commit,
                     "size": len(self.payload["sd15"]), "sha256": files["sd15"].sha256,
                     "architectures": ["sd1", "sd1-inpaint"]},
            "sdxl": {"repo_id": files["sdxl"].repo_id, "revision": files["sdxl"].commit,
                     "size": len(self.payload["sdxl"]), "sha256": files["sdxl"].sha256,
                     "sd_version": "SDXL", "context_dim": 2048, "architectures": ["sdxl", "sdxl-inpaint"]},
            "ssd1b": {"repo_id": files["ssd1b"].repo_id, "revision": "main", "size": None, "sha256": None,
                      "verified": False, "sd_version": "SDXL", "context_dim": 2048, "architectures": ["ssd1b"]},
        })
        self.registry_path = tmp / "registry.json"
        self.registry_path.write_text(json.dumps(self.document))
        self.registry = parse_registry(self.document)
        self.lines: list[str] = []

    def entry(self, variant="sd15") -> WeightsEntry:
        return self.registry[variant]

    def on_disk(self, variant="sd15") -> LoraFiles:
        return LoraFiles(self.entry(variant), self.lora_dir)

    def final(self, variant="sd15") -> Path:
        return self.on_disk(variant).target

    def ensure(self, variant="sd15", **kwargs) -> Path:
        kwargs.setdefault("registry", self.registry)
        kwargs.setdefault("endpoint", self.hub.url)
        kwargs.setdefault("timeout", 5)
        kwargs.setdefault("cache_dir", self.tmp / "hf-cache")
        kwargs.setdefault("log", self.lines.append)
        return ensure_weights(variant, kwargs.pop("lora_dir", self.lora_dir), **kwargs)

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "LCM_LORA_"))}
        env.update(HF_ENDPOINT=self.hub.url, LCM_LORA_REGISTRY=str(self.registry_path),
                   HF_HOME=str(self.tmp / "hf-home"), PYTHONPATH=str(ROOT), HF_HUB_DISABLE_PROGRESS_BARS="1")
        return env


@pytest.fixture
def hub():
    with FakeHub() as fake:
        yield fake


@pytest.fixture
def site(hub, tmp_path, monkeypatch):
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HF_ENDPOINT", "LCM_LORA_REGISTRY"):
        monkeypatch.delenv(name, raising=False)
    # Small reads so a body cut half-way leaves the first half on disk, as a large file would.
    monkeypatch.setattr(hub_constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    return Site(hub, tmp_path)


@pytest.mark.parametrize("redirect", [False, True], ids=["direct", "cdn-redirect"])
def test_fresh_download_installs_verified_file_with_card_and_record(tmp_path, monkeypatch, redirect):
    with FakeHub(redirect=redirect) as hub:
        site = Site(hub, tmp_path)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        calls = []
        path = site.ensure("sdxl", progress=lambda done, total: calls.append((done, total)))
        if redirect:
            assert {r.host.split(":")[0] for r in hub.gets()} == {"localhost"}
            assert not [r for r in hub.requests if r.method == "HEAD" and r.path.startswith("/cdn/")]
    assert path == site.final("sdxl")
    assert path.read_bytes() == site.payload["sdxl"]
    assert listed_by_webui(site.lora_dir) == [path]
    card = json.loads(site.on_disk("sdxl").sidecar.read_text())
    assert card["sd version"] == "SDXL" and card["preferred weight"] == 1.0
    assert site.files["sdxl"].repo_id in card["description"]
    assert site.on_disk("sdxl").recorded_verification() == "sha256"
    assert calls[-1] == (len(site.payload["sdxl"]), len(site.payload["sdxl"]))
    assert all(done <= total for done, total in calls)
    assert not site.on_disk("sdxl").staging.exists()


def test_verified_file_is_returned_without_any_request(site):
    site.ensure()
    site.hub.requests.clear()
    assert site.ensure() == site.final()
    assert site.hub.requests == []


def test_changed_mtime_rehashes_locally_without_network(site):
    site.ensure()
    site.hub.requests.clear()
    final = site.final()
    os.utime(final, ns=(0, 10**9))
    assert site.on_disk().recorded_verification() is None
    site.ensure()
    assert site.hub.requests == []
    assert site.on_disk().recorded_verification() == "sha256"


def test_hand_placed_file_is_verified_and_accepted_offline(site, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    site.final().parent.mkdir(parents=True)
    site.final().write_bytes(site.payload["sd15"])
    assert site.ensure() == site.final()
    assert site.hub.requests == []
    assert site.on_disk().is_installed()


def test_good_file_in_a_read_only_folder_is_used_without_a_record(site, monkeypatch):
    site.final().parent.mkdir(parents=True)
    site.final().write_bytes(site.payload["sd15"])

    def read_only(path, data):
        raise errors.filesystem_error(OSError(errno.EROFS, "Read-only file system"), "writing", path)

    monkeypatch.setattr(lora_files, "write_json_atomic", read_only)
    assert site.ensure() == site.final()
    assert site.hub.requests == []
    assert not site.on_disk().is_installed()


def test_resume_after_transfer_cut_half_way(site):
    size = len(site.payload["sd15"])
    site.hub.cuts, site.hub.cut_after = 1, size // 2
    path = site.ensure()
    assert path.read_bytes() == site.payload["sd15"]
    first, *later = site.hub.gets()
    assert first.range is None and first.sent == size // 2
    resumed = [g for g in later if g.range]
    assert resumed, [(g.range, g.sent) for g in site.hub.gets()]
    offset = int(resumed[0].range.removeprefix("bytes=").split("-")[0])
    assert 0 < offset <= size // 2
    assert resumed[0].status == 206 and resumed[0].sent == size - offset < size


def test_body_stall_times_out_and_resumes(site, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)
    size = len(site.payload["sd15"])
    site.hub.stalls, site.hub.stall_after = 1, size // 2
    assert site.ensure().read_bytes() == site.payload["sd15"]
    assert any(g.range and g.sent < size for g in site.hub.gets())


def test_truncated_file_at_final_path_is_replaced(site):
    final = site.final()
    final.parent.mkdir(parents=True)
    final.write_bytes(site.payload["sd15"][: len(site.payload["sd15"]) // 3])
    assert site.ensure().read_bytes() == site.payload["sd15"]
    assert len(site.hub.gets()) == 1
    assert any("not the expected file" in line for line in site.lines)
    assert listed_by_webui(site.lora_dir) == [final]


def test_leftover_from_a_crash_is_installed_without_network(site):
    part = site.on_disk().verifying
    part.parent.mkdir(parents=True)
    part.write_bytes(site.payload["sd15"])
    assert site.ensure().read_bytes() == site.payload["sd15"]
    assert site.hub.requests == [] and not part.exists()


def test_wrong_bytes_leave_nothing_at_final_path(site):
    site.hub.corrupt = True
    with pytest.raises(errors.WeightsVerificationError) as caught:
        site.ensure()
    message = str(caught.value)
    assert site.entry().sha256 in message and str(site.final()) in message
    assert "sha256" in message and "discarded" in message
    assert not site.final().exists()
    assert listed_by_webui(site.lora_dir) == []


def test_unconfirmed_entry_is_accepted_by_header_and_says_so(site):
    path = site.ensure("ssd1b")
    assert path.read_bytes() == site.payload["ssd1b"]
    assert site.on_disk("ssd1b").recorded_verification() == "header"
    assert any("not confirmed" in line for line in site.lines)
    status = {row["variant"]: row for row in weights_status(site.lora_dir, site.registry)}
    assert status["ssd1b"]["verified"] and status["ssd1b"]["verification"] == "header"
    assert not status["ssd1b"]["sha256_known"]


def test_unconfirmed_entry_rejects_a_lora_for_another_architecture(site):
    site.hub.files[(site.files["ssd1b"].repo_id, "pytorch_lora_weights.safetensors")].data = lora_bytes(768)
    with pytest.raises(errors.WeightsVerificationError, match="cross-attention width"):
        site.ensure("ssd1b")
    assert not site.final("ssd1b").exists()


@pytest.mark.parametrize("change", ["repo", "revision", "file"])
def test_missing_on_hub_is_not_found_with_manual_hint(site, change):
    document = json.loads(json.dumps(site.document))
    entry = document["variants"]["sd15"]
    if change == "repo":
        entry["repo_id"] = "test-org/moved-away"
    elif change == "revision":
        entry["revision"] = "0" * 40
    else:
        entry["filename"] = "other.safetensors"
    started = time.monotonic()
    with pytest.raises(errors.WeightsNotFoundError) as caught:
        site.ensure(registry=parse_registry(document))
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "not found" in message and "save it as" in message and str(site.final()) in message
    assert not site.final().exists()


def test_renamed_repo_is_followed(site):
    document = json.loads(json.dumps(site.document))
    document["variants"]["sd15"]["repo_id"] = "old-org/lcm-sd15"
    site.hub.renamed["old-org/lcm-sd15"] = site.files["sd15"].repo_id
    path = site.ensure(registry=parse_registry(document))
    assert path.read_bytes() == site.payload["sd15"]
    assert [r.status for r in site.hub.requests if r.path.startswith("/old-org/")][0] == 307


def test_server_error_fails_fast_without_backoff(site):
    site.hub.status = 500
    started = time.monotonic()
    with pytest.raises(errors.WeightsNetworkError, match="HTTP 500"):
        site.ensure()
    assert time.monotonic() - started < 10  # huggingface_hub alone would back off for ~23 s
    assert len(site.hub.requests) == 1


def test_connection_refused(site):
    with FakeHub() as closed:
        dead = closed.url
    with pytest.raises(errors.WeightsNetworkError) as caught:
        site.ensure(endpoint=dead)
    assert not isinstance(caught.value, errors.WeightsTimeoutError)
    assert "refused" in str(caught.value)


def test_stalled_server_times_out_within_bound(site):
    site.hub.stall_head = True
    started = time.monotonic()
    with pytest.raises(errors.WeightsTimeoutError, match="within 1 s"):
        site.ensure(timeout=1)
    assert time.monotonic() - started < 20


def test_offline_mode_fails_at_once_without_requests(site, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(errors.WeightsOfflineError) as caught:
        site.ensure()
    assert site.hub.requests == [] and not site.lora_dir.exists()  # nothing created
    assert "first use" in str(caught.value) and str(site.final()) in str(caught.value)


def test_download_not_allowed_uses_only_what_is_on_disk(site):
    with pytest.raises(errors.WeightsDownloadDisabledError) as caught:
        site.ensure(allow_download=False)
    assert site.hub.requests == [] and str(site.final()) in str(caught.value)
    assert not site.lora_dir.exists()  # refused before creating any folder
    site.final().parent.mkdir(parents=True)
    site.final().write_bytes(site.payload["sd15"])
    assert site.ensure(allow_download=False) == site.final()
    assert site.hub.requests == []


def test_registry_override_from_environment(site, monkeypatch):
    monkeypatch.setenv("LCM_LORA_REGISTRY", str(site.registry_path))
    path = ensure_weights("sd15", site.lora_dir, endpoint=site.hub.url, cache_dir=site.tmp / "c", log=None)
    assert path.name == "test-sd15.safetensors" and path.read_bytes() == site.payload["sd15"]


def _make_unwritable(folder: Path):
    """Make ``folder`` refuse new entries even for root; returns the undo, or None where impossible."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode == 0:
        return lambda: subprocess.run([chattr, "-i", str(folder)], check=True)
    return None


def test_read_only_target_folder(site):
    folder = site.final().parent
    (folder / STATE_FOLDER).mkdir(parents=True)
    undo = _make_unwritable(folder)
    lora_dir = site.lora_dir
    if undo is None:  # root without the immutable attribute: sysfs refuses new folders with EPERM
        if not os.path.ismount("/sys"):
            pytest.skip("no way to make a folder read-only for root here")
        lora_dir = Path("/sys/lcm-lora-test")
    try:
        with pytest.raises(errors.WeightsPermissionError) as caught:
            site.ensure(lora_dir=lora_dir)
    finally:
        if undo:
            undo()
    assert "writable" in str(caught.value)
    assert not LoraFiles(site.entry(), lora_dir).target.exists()


class _FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes are written."""

    def __init__(self, file, room):
        self._file, self._room = file, room

    def write(self, data):
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._file.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._file.close()

    def __getattr__(self, name):
        return getattr(self._file, name)


def test_disk_full_while_writing(site, monkeypatch):
    real_open = pathlib.Path.open

    def open_on_small_disk(self, mode="r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        return _FullDisk(handle, 2048) if self.name.endswith(".incomplete") and "b" in mode else handle

    monkeypatch.setattr(pathlib.Path, "open", open_on_small_disk)
    with pytest.raises(errors.WeightsDiskFullError, match="free some space"):
        site.ensure()
    assert not site.final().exists()


def test_disk_too_small_is_refused_before_downloading(site, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(errors.WeightsDiskFullError):
        site.ensure()
    assert site.hub.gets() == []


def test_busy_lock_gives_up_after_lock_timeout(site):
    make_folders(site.lora_dir)
    holder = LockFile(site.on_disk().lock)
    assert holder.acquire(0)
    try:
        with pytest.raises(errors.WeightsBusyError, match="locked"):
            site.ensure(lock_timeout=0.2)
    finally:
        holder.release()
    assert site.hub.requests == []


def lock_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.lock"))


@pytest.mark.parametrize("outcome", ["installed", "refused", "server-error", "wrong-bytes", "cut", "offline"])
def test_no_lock_file_stays_behind_whatever_the_outcome(site, monkeypatch, outcome):
    endpoint = refused_url() if outcome == "refused" else site.hub.url
    site.hub.status = 503 if outcome == "server-error" else None
    site.hub.corrupt = outcome == "wrong-bytes"
    site.hub.cuts, site.hub.cut_after = (5, 100) if outcome == "cut" else (0, 0)  # huggingface_hub 1.x+ may resume
    if outcome == "offline":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        make_folders(site.lora_dir)
    try:
        site.ensure(endpoint=endpoint)
    except errors.WeightsError:
        assert outcome != "installed"
    assert lock_files(site.lora_dir) == []
    staging = site.on_disk().staging
    # Only a partial download worth resuming (huggingface_hub 0.x) keeps the staging folder.
    assert not staging.exists() or list(site.on_disk().partials.glob("*.incomplete"))


def test_a_waiter_left_holding_a_removed_lock_file_tries_again(tmp_path, monkeypatch):
    import fcntl

    path = tmp_path / "sd15.lock"
    first, second, third = LockFile(path), LockFile(path), LockFile(path)
    assert first.acquire(0)
    real_flock = fcntl.flock

    def hand_over_then_flock(fd, operation):
        # Between `second` opening the file and locking it: `first` finishes (removing the file) and `third`
        # takes the lock on a new file at the same path. `second` then gets a lock nobody else can see.
        monkeypatch.setattr(fcntl, "flock", real_flock)
        first.release()
        assert third.acquire(0)
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", hand_over_then_flock)
    assert not second.acquire(0.3), "two holders at once"
    third.release()
    assert not path.exists()
    assert second.acquire(0) and path.exists()
    second.release()
    assert not path.exists()


@pytest.mark.parametrize("problem", ["refused", "silent", "dns", "server-error", "not-found", "wrong-bytes"])
def test_only_a_hub_that_cannot_be_reached_at_all_is_marked_unreachable(site, monkeypatch, problem):
    monkeypatch.setattr(socket, "getaddrinfo", refuse_invalid_hosts(socket.getaddrinfo))
    endpoints = {"refused": refused_url(), "dns": UNRESOLVABLE_URL}
    site.hub.status = {"server-error": 503, "not-found": 404}.get(problem)
    site.hub.corrupt = problem == "wrong-bytes"
    with SilentListener() as silent, pytest.raises(errors.WeightsError) as caught:
        site.ensure(endpoint=silent.url if problem == "silent" else endpoints.get(problem, site.hub.url), timeout=1)
    expected = {"refused": "connection refused", "silent": "no answer within 1 s",
                "dns": "cannot resolve the host name: no network or DNS"}.get(problem)
    assert hub_unreachable(caught.value) == expected, caught.value


def test_broken_progress_callback_does_not_break_the_download(site):
    def progress(done, total):
        raise RuntimeError("UI went away")

    assert site.ensure(progress=progress).read_bytes() == site.payload["sd15"]


WORKER = """
import sys
from lib_lcm.weights.download import ensure_weights
from lib_lcm.weights.lock import LockFile
from lib_lcm.weights.hub_errors import hub_unreachable
path = ensure_weights("sd15", sys.argv[1], lock_timeout=120, log=lambda line: print(line, flush=True))
print("RESULT", path, flush=True)
"""


def test_two_processes_share_one_transfer(site):
    site.hub.gate = __import__("threading").Event()
    command = [sys.executable, "-c", WORKER, str(site.lora_dir)]
    options = dict(env=site.env(), cwd=site.tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = subprocess.Popen(command, **options)
    second = None
    try:
        assert site.hub.get_started.wait(60), "the first process never reached the download"
        second = subprocess.Popen(command, **options)
        waited = []
        for line in second.stdout:
            waited.append(line)
            if "another process is downloading" in line:
                break
        assert waited and "another process is downloading" in waited[-1], waited
        site.hub.gate.set()
        out_first, _ = first.communicate(timeout=120)
        out_second, _ = second.communicate(timeout=120)
    finally:
        site.hub.gate.set()
        for process in (first, second):
            if process and process.poll() is None:
                process.kill()
    results = [line for out in (out_first, out_second) for line in out.splitlines() if line.startswith("RESULT")]
    assert results == [f"RESULT {site.final()}"] * 2, (out_first, out_second)
    assert len(site.hub.gets()) == 1
    assert site.final().read_bytes() == site.payload["sd15"]
