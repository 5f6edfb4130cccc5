"""Every few-step family on the real WebUI (issue 25): for each, the UNet sees the recipe's timesteps, one row per
step at CFG 1, and the infotext and `Lora hashes` name the family's file; an SDXL-only family on an SD 1.5
checkpoint answers its message; a copy of a family's file under the user's own name is recognised by its sha256
and used instead of the catalogue's copy.

The files are stand-ins in the key layout the released files share (kohya `lora_unet_*` over diffusers block
names, LCM-LoRA's layout), shaped for the checkpoint the host loads (the tiny fixtures on A1111, the full-width
SD 1.5 on the Forges, where the SDXL families skip), each with its own random weights, saved under the catalogue's
stems; a registry (``LCM_LORA_REGISTRY``) gives their sizes and hashes, as tests/e2e/conftest.py does for the
LCM-LoRA files."""
from __future__ import annotations

import json

import pytest

from lib_lcm.safetensors_header import read_shapes
from lib_lcm.schedules import lcm_timesteps, trailing_timesteps
from tests.e2e.conftest import family_checkpoint, sdxl_size_args, tiny_registry
from tests.e2e.test_lcm_webui import generate, infotext_prompt, lcm, with_checkpoint
from tests.fixtures import layouts, tiny

pytestmark = pytest.mark.e2e

# Registry variant -> the architecture of the checkpoint its stand-in is shaped for.
FAMILY_FILES = {
    "tcd-sd15": "sd1", "hyper-sd15-1step": "sd1", "hyper-sd15-2step": "sd1", "hyper-sd15-4step": "sd1",
    "hyper-sd15-8step": "sd1", "hyper-sd15-8step-cfg": "sd1", "hyper-sd15-12step-cfg": "sd1",
    "lightning-sdxl-4step": "sdxl", "lightning-sdxl-8step": "sdxl", "dmd2-sdxl-4step": "sdxl",
}
USER_COPY = "my-hyper-eight"  # the user's own download of Hyper-SD15-8steps-lora, renamed


def lora_modules_for(checkpoint) -> dict:
    """The LCM-LoRA layout's modules (name -> shape) for the UNet of `checkpoint`, read from its header."""
    shapes = {key: shape for key, shape in read_shapes(checkpoint).items() if key.startswith("model.diffusion_model.")}
    return layouts.lora_module_shapes(shapes)


def loaded_checkpoints(tiny_webui_models, webui_installation) -> dict:
    """{"sd1": the SD 1.5 checkpoint, "sdxl": the SDXL one where this host loads one}."""
    found = {"sd1": tiny_webui_models["sd15_checkpoint"]}
    try:
        found["sdxl"] = family_checkpoint(tiny_webui_models, "sdxl", webui_installation)
    except pytest.skip.Exception:
        pass  # the Forges without a full-width SDXL: the SDXL families skip
    return found


@pytest.fixture(scope="module")
def families(webui_factory, webui_extensions, tiny_webui_models, webui_installation, tmp_path_factory):
    folder = tmp_path_factory.mktemp("family-loras")
    shipped = json.loads(tiny_webui_models["registry"].read_text())
    checkpoints = loaded_checkpoints(tiny_webui_models, webui_installation)
    files = {}
    for variant, architecture in FAMILY_FILES.items():
        if architecture in checkpoints:
            path = folder / f"{shipped['variants'][variant]['stem']}.safetensors"
            modules = lora_modules_for(checkpoints[architecture])
            tiny.save_safetensors(tiny.lora_state_dict(f"family-{variant}", modules, 4, 4.0), path)
            files[variant] = path
    registry = tiny_registry(shipped, files)
    registry_path = folder / "registry.json"
    registry_path.write_text(json.dumps(registry, indent=2))
    loras = dict(tiny_webui_models["loras"])
    loras.update({f"LCM-LoRA/{path.name}": path for path in files.values()})
    loras[f"{USER_COPY}.safetensors"] = files["hyper-sd15-8step"]
    server = webui_factory(extensions=webui_extensions, checkpoints=list(checkpoints.values()), loras=loras,
                           env={"LCM_LORA_REGISTRY": str(registry_path)}, args=sdxl_size_args(webui_installation))
    return {"client": server.client(), "registry": registry["variants"],
            **{name: path.stem for name, path in checkpoints.items()}}


def checkpoint_of(families, name):
    if name not in families:
        pytest.skip(f"this host loads no {name} checkpoint here (the Forges: build one with tests.fixtures.full_width)")
    return families[name]


CASES = [
    # (family, checkpoint, steps or None for the family's own, the file's variant, sampler, timesteps)
    ("tcd", "sd1", None, "tcd-sd15", "LCM-LoRA TCD", lcm_timesteps(4)),
    ("hyper", "sd1", 1, "hyper-sd15-1step", "LCM-LoRA TCD", lcm_timesteps(1)),
    ("hyper", "sd1", 2, "hyper-sd15-2step", "LCM-LoRA DDIM trailing", trailing_timesteps(2)),
    ("hyper", "sd1", None, "hyper-sd15-4step", "LCM-LoRA DDIM trailing", trailing_timesteps(4)),
    ("hyper", "sd1", 8, "hyper-sd15-8step", "LCM-LoRA DDIM trailing", trailing_timesteps(8)),
    ("lightning", "sdxl", None, "lightning-sdxl-4step", "LCM-LoRA Euler trailing", [999, 749, 499, 249]),
    ("lightning", "sdxl", 8, "lightning-sdxl-8step", "LCM-LoRA Euler trailing", trailing_timesteps(8)),
    ("dmd2", "sdxl", None, "dmd2-sdxl-4step", "LCM-LoRA LCM trailing", [999, 749, 499, 249]),
]


@pytest.mark.parametrize(("family", "checkpoint", "steps", "variant", "sampler", "timesteps"), CASES)
def test_each_family_runs_its_recipe_on_its_file(families, family, checkpoint, steps, variant, sampler, timesteps):
    stem = families["registry"][variant]["stem"]
    settings = {"family": family, **({"steps": steps} if steps else {})}
    result, probe = generate(families["client"], batch_size=2, **with_checkpoint(checkpoint_of(families, checkpoint)),
                             **lcm(**settings))
    info = result.infotext
    assert probe["timesteps"] == timesteps
    assert (probe["calls"], probe["rows"]) == (len(timesteps), 2 * len(timesteps))  # CFG 1: cond rows only
    assert infotext_prompt(info).count(f"<lora:{stem}:1>") == 1
    assert f"Sampler: {sampler}," in info and f"LCM-LoRA: {stem}," in info and f"LCM-LoRA family: {family}" in info
    assert f'Lora hashes: "{stem}: ' in info and "Lora not found" not in info and "LCM-LoRA warning" not in info


def test_hyper_cfg_runs_cond_and_uncond_at_its_guidance(families):
    result, probe = generate(families["client"], **with_checkpoint(families["sd1"]), **lcm(family="hyper-cfg"))
    assert probe["timesteps"] == trailing_timesteps(8) and probe["rows"] == 2 * 8
    assert "CFG scale: 5.0," in result.infotext and "Hyper-SD15-8steps-CFG-lora" in result.infotext


@pytest.mark.parametrize("family", ["lightning", "dmd2"])
def test_an_sdxl_only_family_on_sd15_says_so(families, family):
    with pytest.raises(Exception, match="has no file for SD 1.x checkpoints") as error:
        generate(families["client"], **with_checkpoint(families["sd1"]), **lcm(family=family))
    assert "422" in str(error.value) and "pick another family" in str(error.value)


def test_an_unknown_family_is_a_422_naming_the_allowed_ones(families):
    with pytest.raises(Exception, match="'family' must be one of lcm, tcd, hyper, hyper-cfg, lightning, dmd2") as e:
        generate(families["client"], **with_checkpoint(families["sd1"]), **lcm(family="turbo"))
    assert "422" in str(e.value)


def test_a_users_own_copy_under_another_name_is_recognised(families):
    prompt = f"a photo of a cat <lora:{USER_COPY}:1>"
    result, probe = generate(families["client"], prompt=prompt, **with_checkpoint(families["sd1"]),
                             **lcm(family="hyper", steps=8))
    info = result.infotext
    assert infotext_prompt(info).count("<lora:") == 1  # no catalogue copy added next to the user's
    assert f"LCM-LoRA: {USER_COPY}," in info and f'Lora hashes: "{USER_COPY}: ' in info
    assert probe["timesteps"] == trailing_timesteps(8)


def test_a_step_count_the_file_was_not_distilled_for_warns(families):
    result, probe = generate(families["client"], **with_checkpoint(checkpoint_of(families, "sdxl")), **lcm(family="lightning", steps=6))
    assert "sdxl_lightning_4step_lora was distilled for 4 steps; 6 steps" in result.infotext
    assert probe["timesteps"] == trailing_timesteps(6)


def test_lcm_lora_callers_see_todays_infotext(families):
    result, _ = generate(families["client"], **with_checkpoint(families["sd1"]), **lcm())
    assert "LCM-LoRA family" not in result.infotext and "LCM-LoRA mode: LCM" in result.infotext
