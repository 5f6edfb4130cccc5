"""`python -m lib_lcm` where users run it: from <webui>/extensions/sd-webui-lcm-lora with the WebUI's own venv
python (README's command), and from folders that are not in a WebUI, where it must refuse and write nothing."""
from __future__ import annotations

import json
import shutil
import site as site_module
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakehub import FakeHub
from tests.fixtures import layouts
from tests.test_download import Site

ROOT = Path(__file__).resolve().parents[1]
NAME = "sd-webui-lcm-lora"


class Webui:
    """<tmp>/webui laid out like an A1111 checkout: launch files, models/Lora, a venv, this extension."""

    def __init__(self, tmp: Path, hub_site: Site, how: str = "symlink"):
        self.site, self.root = hub_site, tmp / "webui"
        (self.root / "modules").mkdir(parents=True)
        (self.root / "modules" / "paths_internal.py").write_text("")
        (self.root / "launch.py").write_text("")
        self.lora_dir = self.root / "models" / "Lora"
        self.lora_dir.mkdir(parents=True)
        self.extension = self.root / "extensions" / NAME
        self.extension.parent.mkdir()
        if how == "symlink":
            self.extension.symlink_to(ROOT, target_is_directory=True)
        else:
            self.extension.mkdir()
            shutil.copytree(ROOT / "lib_lcm", self.extension / "lib_lcm",
                            ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(self.root / "venv")], check=True,
                       timeout=120)
        # The WebUI's venv holds huggingface_hub; here it borrows this interpreter's packages.
        packages = next((self.root / "venv" / "lib").glob("python3*/site-packages"))
        (packages / "borrowed.pth").write_text("\n".join(site_module.getsitepackages()) + "\n")

    def env(self, **extra) -> dict:
        env = self.site.env()
        env.pop("PYTHONPATH")  # a user's shell: nothing on PYTHONPATH
        env.update(PWD=str(self.extension), COMMANDLINE_ARGS="")  # as a shell that did `cd <extension>` sets it
        env.update(extra)
        return env

    def run(self, *command: str, **env) -> subprocess.CompletedProcess:
        """A command line run from the extension folder, as README writes it."""
        return subprocess.run(list(command), cwd=self.extension, env=self.env(**env), capture_output=True,
                              text=True, timeout=120)

    def add_checkpoint(self, label: str) -> None:
        header = {k: {"dtype": "F16", "shape": list(v), "data_offsets": [0, 0]}
                  for k, v in layouts.real_checkpoint_shapes(label).items()}
        raw = json.dumps(header).encode()
        folder = self.root / "models" / "Stable-diffusion"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{label}.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)


@pytest.fixture
def hub_site(tmp_path):
    with FakeHub() as hub:
        yield Site(hub, tmp_path)


def test_readme_command_with_the_webuis_venv_python_fills_its_lora_folder(tmp_path, hub_site):
    webui = Webui(tmp_path, hub_site, "copy")  # a real folder, as `git clone` or "Install from URL" make it
    done = webui.run("../../venv/bin/python", "-m", "lib_lcm", "download", "--variant", "all")
    assert done.returncode == 0, done.stdout + done.stderr
    lcm = webui.lora_dir.resolve() / "LCM-LoRA"
    for variant in ("sd15", "sdxl", "ssd1b"):
        assert f"LCM-LoRA: {variant} ready: {lcm}/test-{variant}.safetensors" in done.stdout
        assert (lcm / f"test-{variant}.safetensors").read_bytes() == hub_site.payload[variant]
    assert ".." not in done.stdout
    status = webui.run("../../venv/bin/python", "-m", "lib_lcm", "status")
    assert status.returncode == 0 and status.stdout.count("verified (") == 3, status.stdout


@pytest.mark.parametrize("shell_pwd", [True, False], ids=["shell", "no-PWD"])
def test_a_symlinked_extension_finds_its_webui(tmp_path, hub_site, shell_pwd):
    # `../../venv/bin/python` cannot work here: the kernel resolves `..` from the symlink's target. The venv's
    # full path does; the WebUI is then found from the shell's PWD, or else from the venv python's prefix.
    webui = Webui(tmp_path, hub_site, "symlink")
    env = webui.env()
    if not shell_pwd:
        env.pop("PWD")  # cmd.exe, or a launcher: only the resolved folder (this checkout) is known
    done = subprocess.run([str(webui.root / "venv" / "bin" / "python"), "-m", "lib_lcm", "download", "-v", "sd15"],
                          cwd=webui.extension, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (webui.lora_dir / "LCM-LoRA" / "test-sd15.safetensors").is_file()


def test_variant_auto_fetches_what_the_webuis_checkpoints_need(tmp_path, hub_site):
    webui = Webui(tmp_path, hub_site, "copy")
    webui.add_checkpoint("sdxl")
    done = webui.run("../../venv/bin/python", "-m", "lib_lcm", "download", "--variant", "auto")
    assert done.returncode == 0, done.stderr
    installed = sorted(p.name for p in (webui.lora_dir / "LCM-LoRA").glob("*.safetensors"))
    assert installed == ["test-sdxl.safetensors"]
    status = webui.run("../../venv/bin/python", "-m", "lib_lcm", "status", "-v", "auto")
    assert status.returncode == 0 and status.stdout.split()[0] == "sdxl", status.stdout


def outside(tmp_path: Path, hub_site: Site, *args: str, **extra_env) -> subprocess.CompletedProcess:
    """The CLI from a copy of the extension that is in no WebUI (<tmp>/src/sd-webui-lcm-lora)."""
    checkout = tmp_path / "src" / NAME
    if not checkout.exists():
        shutil.copytree(ROOT / "lib_lcm", checkout / "lib_lcm", ignore=shutil.ignore_patterns("__pycache__"))
    env = hub_site.env()
    env.update(PYTHONPATH=str(checkout), PYTHONDONTWRITEBYTECODE="1", COMMANDLINE_ARGS="", **extra_env)
    return subprocess.run([sys.executable, "-m", "lib_lcm", *args], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=120)


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("args", [["download"], ["download", "-v", "sd15"], ["status"]])
@pytest.mark.parametrize("offline", [False, True])
def test_outside_a_webui_without_lora_dir_it_refuses_and_writes_nothing(tmp_path, hub_site, args, offline):
    (tmp_path / "src").mkdir()
    before = files_under(tmp_path)
    done = outside(tmp_path, hub_site, *args, **({"HF_HUB_OFFLINE": "1"} if offline else {}))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no Stable Diffusion WebUI found" in done.stderr
    assert "--webui-dir" in done.stderr and "--lora-dir" in done.stderr and "Traceback" not in done.stderr
    copied = [f for f in files_under(tmp_path) if f not in before and not f.startswith(f"src/{NAME}/lib_lcm/")]
    assert copied == [] and hub_site.hub.requests == []
    assert not (tmp_path / "models").exists()


def test_a_mistyped_lora_dir_is_refused_not_created(tmp_path, hub_site):
    (tmp_path / "models" / "Lora").mkdir(parents=True)
    typo = tmp_path / "models" / "Lroa"
    for command in ("download", "status"):
        done = outside(tmp_path, hub_site, command, "-v", "sd15", "--lora-dir", str(typo))
        assert done.returncode == 2 and "does not exist" in done.stderr and str(typo) in done.stderr, done.stderr
        assert not typo.exists()
    assert "--create-lora-dir" in done.stderr and hub_site.hub.requests == []
    done = outside(tmp_path, hub_site, "download", "-v", "sd15", "--lora-dir", str(typo), "--create-lora-dir")
    assert done.returncode == 0, done.stderr
    assert (typo / "LCM-LoRA" / "test-sd15.safetensors").is_file()


def test_an_existing_lora_dir_works_outside_a_webui_and_paths_print_normalised(tmp_path, hub_site):
    lora = tmp_path / "models" / "Lora"
    lora.mkdir(parents=True)
    done = outside(tmp_path, hub_site, "download", "-v", "sd15", "--lora-dir", "../../models/x/../Lora")
    assert done.returncode == 0, done.stderr
    assert f"sd15 ready: {lora.resolve()}/LCM-LoRA/test-sd15.safetensors" in done.stdout and ".." not in done.stdout


def test_variant_auto_needs_a_webui(tmp_path, hub_site):
    (tmp_path / "Lora").mkdir()
    done = outside(tmp_path, hub_site, "download", "-v", "auto", "--lora-dir", str(tmp_path / "Lora"))
    assert done.returncode == 2 and "--variant auto reads the checkpoints of a WebUI" in done.stderr
    assert files_under(tmp_path / "Lora") == []


def test_an_explicit_webui_dir_must_be_a_webui(tmp_path, hub_site):
    (tmp_path / "not-webui").mkdir()
    done = outside(tmp_path, hub_site, "status", "--webui-dir", str(tmp_path / "not-webui"))
    assert done.returncode == 2 and "not a Stable Diffusion WebUI folder" in done.stderr
    webui = Webui(tmp_path, hub_site, "copy")
    done = outside(tmp_path, hub_site, "download", "-v", "sd15", "--webui-dir", str(webui.root))
    assert done.returncode == 0, done.stderr
    assert (webui.lora_dir / "LCM-LoRA" / "test-sd15.safetensors").is_file()


def test_help_is_plain_text():
    for args in ([], ["download"], ["status"]):
        done = subprocess.run([sys.executable, "-m", "lib_lcm", *args, "--help"], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0 and "``" not in done.stdout, done.stdout
    assert "auto (the LCM-LoRA files the WebUI's checkpoints need" in " ".join(done.stdout.split())
