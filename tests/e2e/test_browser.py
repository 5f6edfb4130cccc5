"""The LCM-LoRA panel in a real browser against the real WebUI (UI mode).

Headless Debian Chromium (/usr/bin/chromium) driven by playwright-core from npm (tests/e2e/browser, installed
here with `npm ci` on first use; never `npx playwright install`). tests/e2e/browser/panel.mjs runs every
scenario once, each in a fresh page, and reports what the page showed; the tests below judge it.

Set LCM_LORA_SCREENSHOT=<path> (e.g. docs/panel.png) to also save the screenshot of the open panel there.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import family_checkpoint, sdxl_size_args
from tests.e2e.webui import REPO_ROOT, WebUIServer

pytestmark = pytest.mark.e2e

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
CHROMIUM = Path("/usr/bin/chromium")
NPM_TIMEOUT = 600
RUN_TIMEOUT = 900
STYLE_TAG = "<lora:tiny-style-sd15:0.8>"
LCM_TAG = "<lora:lcm-lora-sdv1-5:1>"
# First A1111 releases with a host feature the page shows (lib_lcm_webui/compat/, docs/compatibility.md).
HEADER_CHECKBOX = (1, 7, 0)  # InputAccordion's checkbox in its header; on 1.6 opening the panel is the switch
SCHEDULE_TYPES = (1, 9, 0)  # the tab's "Schedule type" control
# The Forges report no release (an untagged checkout: newer than any, so both of the above) and load none of the
# tiny fixtures: they serve the full-width models (tests/e2e/conftest.py `tiny_webui_models`).


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"browser e2e: `{name}` is not on PATH")
    return path


def install_playwright() -> Path:
    """playwright-core from tests/e2e/browser/package-lock.json (npm ci), once."""
    module = BROWSER_DIR / "node_modules" / "playwright-core"
    if not module.is_dir():
        npm = _tool("npm")
        run = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR, capture_output=True,
                             text=True, timeout=NPM_TIMEOUT)
        if run.returncode != 0:
            pytest.fail(f"npm ci in {BROWSER_DIR} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return module


def start_ui_server(installation, root: Path, models: dict, env: dict, factory, loras: dict | None = None,
                    checkpoints: list | None = None, extensions: dict | None = None,
                    prepare_data=None, args: tuple = ()) -> WebUIServer:
    """A UI-mode server, counted among `factory`'s (the session's): on Forge the others are stopped first.
    `extensions` are installed next to ours; `prepare_data(data_dir)` may add files before the start."""
    from tests.e2e.conftest import EXTENSION_NAME
    from tests.e2e.webui import DataDir

    if not CHROMIUM.is_file():
        pytest.skip("browser e2e: /usr/bin/chromium is missing (apt-get install -y chromium fonts-noto-color-emoji)")
    _tool("node")
    install_playwright()
    data_dir = DataDir.create(root / "data", checkpoints or models["checkpoints"],
                              models["loras"] if loras is None else loras,
                              extensions={EXTENSION_NAME: REPO_ROOT, **(extensions or {})})
    if prepare_data is not None:
        prepare_data(data_dir)
    server = factory.adopt(WebUIServer(installation, data_dir, ui=True, extra_env=env, extra_args=args))
    server.prepare()
    try:
        server.start()
        # Offline, SDXL live previews would make A1111 download its preview decoder.
        server.client().post("/sdapi/v1/options", {"live_previews_enable": False})
    except BaseException:
        server.stop()
        raise
    return server


def run_scenarios(server: WebUIServer, out: Path, script: str = "panel.mjs", **options) -> tuple[dict, str]:
    """Run `script` (panel.mjs) against `server`; ({scenario: observations}, node's output)."""
    from PIL import Image

    Image.new("RGB", (64, 64), (120, 90, 200)).save(out / "init.png")
    checkpoints = [p.name for p in server.data_dir.root.joinpath("models", "Stable-diffusion").glob("*.safetensors")]
    config = {"url": server.base_url, "out": str(out), "chromium": str(CHROMIUM), "initImage": str(out / "init.png"),
              "checkpoints": sorted(checkpoints), "loadedCheckpoint": server.data_dir.checkpoint.name, **options}
    run = subprocess.run([_tool("node"), str(BROWSER_DIR / script), json.dumps(config)], cwd=BROWSER_DIR,
                         capture_output=True, text=True, timeout=RUN_TIMEOUT)
    report_path = out / "report.json"
    if not report_path.is_file():
        pytest.fail(f"{script} wrote no report (exit {run.returncode}):\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
                    f"\n--- WebUI log ---\n{server.log_tail(80)}")
    print(f"\nbrowser report: {report_path}\n" + run.stdout[-3000:])
    return json.loads(report_path.read_text()), run.stdout


def _sdxl_checkpoints(models: dict) -> list:
    """The SDXL checkpoint the "checkpoint" scenario switches to (tiny on A1111, full-width on the Forges, where
    one was built)."""
    sdxl = models["family_checkpoints"].get("sdxl")
    return [sdxl] if sdxl is not None and sdxl.is_file() else []


@pytest.fixture(scope="module")
def ui_server(webui_installation, tmp_path_factory, tiny_webui_models, webui_env, webui_factory):
    sdxl = _sdxl_checkpoints(tiny_webui_models)
    server = start_ui_server(webui_installation, tmp_path_factory.mktemp("webui-browser"), tiny_webui_models,
                             dict(webui_env), checkpoints=[*tiny_webui_models["checkpoints"], *sdxl],
                             factory=webui_factory, args=sdxl_size_args(webui_installation) if sdxl else ())
    yield server
    server.stop()


MAIN_SCENARIOS = ("txt2img", "edits", "hires", "img2img", "pnginfo", "sendto", "screenshot")


@pytest.fixture(scope="module")
def page_report(ui_server, tmp_path_factory):
    """Run every scenario of panel.mjs once (without an SDXL checkpoint, all but "checkpoint");
    {scenario: observations}."""
    out = tmp_path_factory.mktemp("browser-out")
    has_sdxl = any("sdxl" in p.name for p in ui_server.data_dir.root.joinpath("models", "Stable-diffusion").iterdir())
    scenarios = [*MAIN_SCENARIOS, *(["checkpoint"] if has_sdxl else [])]
    # LCM_E2E_SCENARIOS=a,b: only those (a re-run of one scenario on a slow host; the others' tests then fail)
    chosen = [name for name in os.environ.get("LCM_E2E_SCENARIOS", "").split(",") if name]
    report, _ = run_scenarios(ui_server, out, scenarios=[name for name in scenarios if not chosen or name in chosen])
    for result in report.values():
        if result.get("error"):
            result["error"] += f"\n--- WebUI log (last lines) ---\n{ui_server.log_tail(25)}"
    screenshot = out / "panel.png"
    target = os.environ.get("LCM_LORA_SCREENSHOT")
    if target and screenshot.is_file():
        shutil.copyfile(screenshot, REPO_ROOT / target)
    return report


def scenario(report: dict, name: str) -> dict:
    result = report.get(name)
    assert result is not None, f"scenario {name} did not run"
    assert not result.get("error"), f"scenario {name} failed in the browser:\n{result['error']}"
    assert not result.get("pageErrors"), f"page errors from the panel's scripts: {result['pageErrors']}"
    return result


def infotext_fields(text: str) -> dict:
    """`Key: value` pairs of an infotext's last line (quoted values kept whole)."""
    last = text.strip().splitlines()[-1]
    return {key: value.strip('"') for key, value in re.findall(r'\s*([\w \-/]+):\s*("(?:\\.|[^"])*"|[^,]*)(?:,|$)', last)}


def test_switching_on_sets_the_tabs_own_controls_and_the_prompt_tag(page_report, webui_version, tiny_webui_models):
    s = scenario(page_report, "txt2img")
    before, on = s["before"], s["on"]
    assert (before["sampler"], before["steps"], before["cfg"]) == ("Euler a", 25, 6.5)
    assert on["panelEnabled"] is True and on["panelOpen"] is True
    assert on["headerCheckbox"] is (webui_version >= HEADER_CHECKBOX)
    assert (on["sampler"], on["steps"], on["cfg"]) == ("LCM-LoRA", 4, 1)
    # No "Schedule type" control before 1.9: nothing to set, and none appears. Forge Classic (no release tag, so
    # "newer than any") dropped the control again: there too none appears.
    has_schedule_types = webui_version >= SCHEDULE_TYPES and before["scheduler"] is not None
    assert on["scheduler"] == ("Automatic" if has_schedule_types else None)
    if webui_version < (999, 0, 0):  # a tagged A1111 release: the control exists exactly from 1.9
        assert (before["scheduler"] is not None) is (webui_version >= SCHEDULE_TYPES)
    assert on["prompt"] == f"a cat, {STYLE_TAG} {LCM_TAG}"
    assert on["prompt"].count("lcm-lora") == 1
    assert on["statusStem"] == "lcm-lora-sdv1-5"
    # The loaded checkpoint: tiny-sd15 (A1111) or Forge's SD 1.5 one, named before Forge has loaded it (first generation).
    assert tiny_webui_models["sd15_checkpoint"].stem in on["statusText"] and "installed" in on["statusText"]


def test_panel_steps_and_cfg_keep_the_tab_in_sync(page_report):
    s = scenario(page_report, "txt2img")
    assert (s["synced"]["steps"], s["synced"]["cfg"]) == (6, 1.5)
    assert s["synced"]["prompt"] == f"a cat, {STYLE_TAG} <lora:lcm-lora-sdv1-5:0.75>"
    assert s["tcd"]["sampler"] == "LCM-LoRA TCD" and s["tcd"]["gammaVisible"] is True
    assert s["on"]["gammaVisible"] is False


def test_generate_records_the_lcm_settings_and_the_lora_hash(page_report):
    s = scenario(page_report, "txt2img")
    info = infotext_fields(s["infotext"])
    assert info["Sampler"] == "LCM-LoRA" and info["Steps"] == "4" and info["CFG scale"] == "1.0"
    assert info["LCM-LoRA"] == "lcm-lora-sdv1-5"
    assert info["LCM-LoRA weight"] == "1.0"
    assert "lcm-lora-sdv1-5: " in info["Lora hashes"] and "tiny-style-sd15: " in info["Lora hashes"]
    assert s["infotext"].count("<lora:lcm-lora-sdv1-5") == 1
    assert "Lora not found" not in s["infotext"]


def test_switching_off_restores_the_users_values_and_prompt(page_report, webui_version):
    s = scenario(page_report, "txt2img")
    before, off = s["before"], s["off"]
    assert off["panelEnabled"] is False
    # 1.7+: switched off with the header checkbox, the panel stays open; 1.6: switched off by closing it.
    assert off["panelOpen"] is (webui_version >= HEADER_CHECKBOX)
    for key in ("sampler", "scheduler", "steps", "cfg", "prompt", "hrSampler", "hrSteps"):
        assert off[key] == before[key], key


def test_user_edits_made_while_on_are_kept(page_report):
    s = scenario(page_report, "edits")
    assert s["on"]["prompt"] == "<lora:lcm-lora-sdv1-5:1> a dog", "an existing tag is updated, not duplicated"
    off = s["off"]
    assert off["steps"] == 10, "a control the user changed while on stays"
    assert (off["sampler"], off["cfg"]) == ("Euler a", s["before"]["cfg"])
    assert off["prompt"] == "<lora:lcm-lora-sdv1-5:1> a dog, at night", "the user's own tag and text stay"


def test_hires_fix_follows_the_lcm_sampler_and_steps(page_report):
    s = scenario(page_report, "hires")
    assert (s["on"]["hrSampler"], s["on"]["hrSteps"]) == ("Use same sampler", 0)
    info = infotext_fields(s["infotext"])
    assert info["Sampler"] == "LCM-LoRA" and info["LCM-LoRA"] == "lcm-lora-sdv1-5"
    assert "Hires upscale" in info and "Hires sampler" not in info
    assert s["infotext"].count("<lora:lcm-lora-sdv1-5") == 1
    assert (s["off"]["hrSampler"], s["off"]["hrSteps"]) == (s["before"]["hrSampler"], s["before"]["hrSteps"])


def test_img2img_tab_the_same(page_report):
    s = scenario(page_report, "img2img")
    before, on, off = s["before"], s["on"], s["off"]
    assert (on["sampler"], on["steps"], on["cfg"]) == ("LCM-LoRA", 4, 1)
    assert on["prompt"] == f"a cat {LCM_TAG}"
    info = infotext_fields(s["infotext"])
    assert info["Sampler"] == "LCM-LoRA" and info["LCM-LoRA"] == "lcm-lora-sdv1-5"
    assert "lcm-lora-sdv1-5: " in info["Lora hashes"]
    for key in ("sampler", "scheduler", "steps", "cfg", "prompt"):
        assert off[key] == before[key], key


def test_png_info_send_to_txt2img_restores_the_panel(page_report):
    s = scenario(page_report, "pnginfo")
    params = infotext_fields(s["parameters"])
    assert (params["LCM-LoRA"], params["LCM-LoRA mode"], params["TCD gamma"]) == ("lcm-lora-sdv1-5", "TCD", "0.5")
    pasted = s["pasted"]
    assert pasted["panelEnabled"] is True and pasted["panelOpen"] is True
    assert (pasted["panelSteps"], pasted["panelWeight"], pasted["panelMode"]) == (4, 0.75, "TCD")
    assert pasted["panelGamma"] == 0.5 and pasted["gammaVisible"] is True
    assert (pasted["sampler"], pasted["steps"], pasted["cfg"]) == ("LCM-LoRA TCD", 4, 1)
    assert pasted["prompt"].count("<lora:lcm-lora-sdv1-5:0.75>") == 1
    assert pasted["overrideSettingsVisible"] is False, "the panel's own fields are not offered as overrides"


def test_send_to_img2img_carries_the_panel(page_report):
    sent = scenario(page_report, "sendto")["sent"]
    assert sent["panelEnabled"] is True
    assert (sent["panelSteps"], sent["panelCfg"], sent["panelWeight"], sent["panelMode"]) == (6, 1, 0.75, "LCM")
    assert (sent["sampler"], sent["steps"], sent["cfg"]) == ("LCM-LoRA", 6, 1)
    assert sent["prompt"] == "a cat <lora:lcm-lora-sdv1-5:0.75>"


def test_checkpoint_change_moves_the_status_and_the_tag_to_the_new_variant(page_report, webui_installation,
                                                                          tiny_webui_models):
    sdxl = family_checkpoint(tiny_webui_models, "sdxl", webui_installation).stem
    s = scenario(page_report, "checkpoint")
    assert s["before"]["prompt"] == f"a cat {LCM_TAG}"
    after = s["after"]
    assert after["statusStem"] == "lcm-lora-sdxl"
    assert sdxl in after["statusText"] and "(SDXL)" in after["statusText"]
    assert after["prompt"] == "a cat <lora:lcm-lora-sdxl:1>"
    info = infotext_fields(s["infotext"])
    assert info["LCM-LoRA"] == "lcm-lora-sdxl" and "lcm-lora-sdxl: " in info["Lora hashes"]
    assert s["back"]["statusStem"] == "lcm-lora-sdv1-5" and s["back"]["prompt"] == f"a cat {LCM_TAG}"


@pytest.fixture(scope="module")
def reload_report(webui_installation, tmp_path_factory, tiny_webui_models, webui_env, webui_factory):
    """Settings -> Reload UI on a server of its own.

    gradio 3.41's `Blocks.close()` (the host's restart) now and then waits forever for a connection that its
    own queue client keeps open to the server; a fresh server with little queue traffic behind it makes that
    rare, and the main scenarios never depend on a restart.
    """
    server = start_ui_server(webui_installation, tmp_path_factory.mktemp("webui-reload"), tiny_webui_models,
                             dict(webui_env), factory=webui_factory)
    try:
        report, _ = run_scenarios(server, tmp_path_factory.mktemp("browser-reload"), scenarios=["reload"])
        if report.get("reload", {}).get("error"):
            report["reload"]["error"] += f"\n--- WebUI log (last lines) ---\n{server.log_tail(25)}"
    finally:
        server.stop()
    return report


def test_settings_section_and_reload_ui(reload_report):
    s = scenario(reload_report, "reload")
    assert len(s["settings"]) == 7, s["settings"]
    assert "LCM-LoRA" in s["sectionTitles"]
    options = s["samplerOptions"]
    assert options.count("LCM-LoRA") == 1 and options.count("LCM-LoRA TCD") == 1, "no duplicates after Reload UI"
    assert (s["on"]["sampler"], s["on"]["prompt"]) == ("LCM-LoRA", f"a cat {LCM_TAG}")
    assert (s["off"]["sampler"], s["off"]["prompt"]) == (s["before"]["sampler"], s["before"]["prompt"])


def test_screenshot_of_the_open_panel_is_saved(page_report):
    s = scenario(page_report, "screenshot")
    path = Path(s["path"])
    assert path.is_file() and path.stat().st_size > 10_000


@pytest.fixture(scope="module")
def download_report(webui_installation, tmp_path_factory, tiny_webui_models, webui_env, webui_factory):
    """The Download button on a WebUI without the LoRA file, against a local stand-in for the hub.

    The hub holds the file's bytes back until the page has shown download progress (the page writes the
    signal file), so the progress line is seen for certain.
    """
    from tests.fakehub import FakeHub

    registry = json.loads(Path(tiny_webui_models["registry"]).read_text())
    entry = registry["variants"]["sd15"]
    lora = Path(tiny_webui_models["sd15_lcm_lora"])  # the file the registry describes (Forge: the real one)
    out = tmp_path_factory.mktemp("browser-download")
    signal = out / "progress-seen"
    with FakeHub() as hub:
        hub.add(entry["repo_id"], entry["filename"], lora.read_bytes(), commit=entry["revision"])
        hub.gate = threading.Event()
        env = {**webui_env, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
               "LCM_LORA_DOWNLOAD": "none"}
        loras = {name: path for name, path in tiny_webui_models["loras"].items() if not name.startswith("LCM-LoRA/")}
        server = start_ui_server(webui_installation, tmp_path_factory.mktemp("webui-download"), tiny_webui_models,
                                 env, loras=loras, factory=webui_factory)

        def release_when_seen():
            deadline = time.monotonic() + RUN_TIMEOUT
            while not signal.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            hub.gate.set()

        releaser = threading.Thread(target=release_when_seen, daemon=True)
        releaser.start()
        try:
            report, _ = run_scenarios(server, out, scenarios=["download"], signal=str(signal))
        finally:
            signal.touch()
            releaser.join()
            server.stop()
        gets = hub.gets()
    return {**report, "hubGets": len(gets)}


def test_download_button_shows_progress_and_installs_the_file(download_report):
    s = scenario(download_report, "download")
    assert s["before"]["downloadVisible"] is True and "not installed" in s["before"]["statusText"]
    assert re.search(r"Downloading lcm-lora-sdv1-5|Starting the download", s["progress"]["statusText"])
    assert "not installed" not in s["progress"]["statusText"] and s["progress"]["downloadVisible"] is False
    assert s["after"]["downloadVisible"] is False
    assert "lcm-lora-sdv1-5: installed, verified" in s["after"]["statusText"]
    assert download_report["hubGets"] >= 1
    info = infotext_fields(s["infotext"])
    assert info["LCM-LoRA"] == "lcm-lora-sdv1-5" and "lcm-lora-sdv1-5: " in info["Lora hashes"]
