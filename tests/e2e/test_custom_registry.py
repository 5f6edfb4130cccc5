"""A weights registry with its own file stems (``LCM_LORA_REGISTRY``, documented in docs/weights.md) works end to
end on the real WebUI: the panel tags the prompt with the registry's stem for each variant, the host loads that
file (``Lora hashes``), ``<lora:lcm>`` resolves to it, and the panel's status line and the status route name it.
The registry is the stems' one home: no other list of them exists in the extension (issue 11)."""
from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import TINY_LCM_LORAS, family_checkpoint, sdxl_size_args
from tests.e2e.test_lcm_webui import generate, infotext_prompt, lcm, with_checkpoint

pytestmark = pytest.mark.e2e

CUSTOM_STEMS = {"sd15": "my-lcm-sd15", "sdxl": "My-LCM-XL", "ssd1b": "my-lcm-ssd-1b"}


@pytest.fixture(scope="module")
def custom(webui_factory, webui_extensions, tiny_webui_models, webui_installation, tmp_path_factory):
    """A server whose registry gives every variant a custom stem, with the LoRA files saved under those stems."""
    registry = json.loads(tiny_webui_models["registry"].read_text())
    loras = {name: path for name, path in tiny_webui_models["loras"].items() if not name.startswith("LCM-LoRA/")}
    for variant, stem in CUSTOM_STEMS.items():
        registry["variants"][variant]["stem"] = stem
        shipped_file = tiny_webui_models["loras"].get(f"LCM-LoRA/{TINY_LCM_LORAS[variant]}")
        if shipped_file is not None:  # on the Forges: those of the families built
            loras[f"LCM-LoRA/{stem}.safetensors"] = shipped_file
    path = tmp_path_factory.mktemp("custom-registry") / "weights_registry.json"
    path.write_text(json.dumps(registry, indent=2))
    families = tiny_webui_models["family_checkpoints"]
    checkpoints = [families[variant] for variant in CUSTOM_STEMS if variant in families]
    server = webui_factory(extensions=webui_extensions, checkpoints=checkpoints, loras=loras,
                           env={"LCM_LORA_REGISTRY": str(path)}, args=sdxl_size_args(webui_installation))
    return server.client()


def checkpoint_for(variant, webui_installation, tiny_webui_models):
    return family_checkpoint(tiny_webui_models, variant, webui_installation).stem


@pytest.mark.parametrize("variant", list(CUSTOM_STEMS))
def test_the_panel_tags_each_variant_with_the_registrys_stem(custom, variant, webui_installation, tiny_webui_models):
    stem = CUSTOM_STEMS[variant]
    checkpoint = checkpoint_for(variant, webui_installation, tiny_webui_models)
    result, probe = generate(custom, **with_checkpoint(checkpoint), **lcm())
    info = result.infotext
    assert infotext_prompt(info).count(f"<lora:{stem}:1>") == 1
    assert f"LCM-LoRA: {stem}" in info
    assert f'Lora hashes: "{stem}: ' in info and "Lora not found" not in info
    assert probe["timesteps"] == [999, 759, 499, 259]


def test_the_alias_resolves_to_the_registrys_stem(custom, webui_installation, tiny_webui_models):
    checkpoint = checkpoint_for("sd15", webui_installation, tiny_webui_models)
    result, _ = generate(custom, prompt="a cat <lora:lcm:0.8>", sampler_name="Euler", steps=4,
                         **with_checkpoint(checkpoint))
    assert "<lora:my-lcm-sd15:0.8>" in infotext_prompt(result.infotext)
    assert 'Lora hashes: "my-lcm-sd15: ' in result.infotext


def test_the_panel_status_and_the_status_route_name_the_registrys_stem(custom, webui_installation,
                                                                        tiny_webui_models):
    checkpoint = checkpoint_for("sd15", webui_installation, tiny_webui_models)
    generate(custom, **with_checkpoint(checkpoint), **lcm())  # loads the checkpoint, installs the file record
    status = custom.get("/lcm-test/v1/panel-status")["html"]
    assert 'data-lcm-stem="my-lcm-sd15"' in status and "<code>my-lcm-sd15</code>" in status
    assert "installed" in status and "not installed" not in status
    rows = {row["variant"]: row for row in custom.get("/lcm-lora/v1/status")["variants"]}
    assert {variant: row["stem"] for variant, row in rows.items() if row["family"] == "lcm"} == CUSTOM_STEMS
    assert rows["sd15"]["verified"]
