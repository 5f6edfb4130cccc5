"""AnimateDiff video with LCM-LoRA on the Forges: sd-webui-animatediff's Forge branch (``forge/master``, v2.0.2-f),
next to the built-in ControlNet, on the Forge's SD 1.5 checkpoint (``LCM_E2E_FORGE_MODELS``) with the full-size
stand-in motion modules of tests/fixtures/neighbour_models.py. Part of the neighbours suite: ``LCM_NEIGHBOURS_DIR``
holds the Forge-branch checkout as ``sd-webui-animatediff`` (A1111 runs the A1111 branch in
tests/e2e/test_neighbours_models.py).

What the Forge branch needs, and the server gives it:
- the ``ldm_patched`` backend (Forge before 2.0, reForge, Forge Classic): it drives that backend's ``UnetPatcher``.
  Forge 2 replaced it (``backend/``), a host limitation this module skips with one line;
- no ControlNet unit slots (``control_net_unit_count`` 0): over the API it takes every unit, the built-in
  ControlNet's empty disabled ones too, as a unit asking for a ControlNet video, and stops the generation's set-up
  ("You need to specify cond hint for ControlNet", its ``animatediff_utils.get_controlnet_units``). In the UI it
  takes only enabled units.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.test_neighbours import NEIGHBOURS_ENV
from tests.e2e.test_neighbours_models import (
    MOTION_MODULES,
    assert_lcm_video,
    errors_but_animatediffs_git_tag,
    forge_server,
    has_animatelcm,
)
from tests.fixtures import neighbour_models

pytestmark = pytest.mark.e2e
NAME = "sd-webui-animatediff"


@pytest.fixture(scope="module")
def forge_animatediff(webui_installation, tiny_webui_models, webui_env, tmp_path_factory):
    """(server, client, the AnimateDiff checkout) on a Forge that can run its Forge branch."""
    if not webui_installation.is_forge:
        pytest.skip("AnimateDiff's Forge branch: runs on the Forges")
    if not (webui_installation.webui_dir / "ldm_patched").is_dir():
        pytest.skip("host limitation: sd-webui-animatediff's Forge branch needs the ldm_patched backend "
                    "(reForge, Forge Classic, Forge before 2.0); Forge 2 replaced it")
    folder = Path(os.environ[NEIGHBOURS_ENV]) / NAME
    if not folder.is_dir():
        pytest.skip(f"{NAME} is not in {NEIGHBOURS_ENV}")
    if "modules_forge" not in (folder / "scripts" / "animatediff_mm.py").read_text():
        pytest.fail(f"{folder} is {NAME}'s A1111 branch: on a Forge check out its forge/master branch")
    config = {"animatediff_model_path": str(neighbour_models.cached().motion_module.parent),
              "control_net_unit_count": 0}
    with forge_server(webui_installation, tiny_webui_models, webui_env, tmp_path_factory.mktemp("forge-ad"),
                      extensions={NAME: folder}, config=config) as server:
        yield server, server.client(), folder


@pytest.mark.parametrize("model", MOTION_MODULES)
def test_animatediff_video_with_lcm_one_row_per_frame_per_step(forge_animatediff, model):
    server, client, folder = forge_animatediff
    if model == neighbour_models.ANIMATELCM_FILE and not has_animatelcm(folder):
        pytest.skip(f"this {NAME} (its Forge branch, 2024-03) has no AnimateLCM motion-module type; its A1111 "
                    "branch has one since v2.0.1-a")
    assert_lcm_video(server, client, model)


def test_no_error_or_traceback_from_our_extension_in_the_log(forge_animatediff):
    assert errors_but_animatediffs_git_tag(forge_animatediff[0]) == []
