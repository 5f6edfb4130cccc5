"""The full-size ControlNet and motion-module stand-ins have the released files' layouts (key set and shapes).

The released layouts are listed in tests/fixtures/released_layouts/ (written from the extensions' own model
classes); these tests need neither the extensions nor the 1.8 GB files."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tests.fixtures import neighbour_models as nm

RELEASED = Path(__file__).parent / "fixtures" / "released_layouts"


def released(name: str) -> dict[str, tuple[int, ...]]:
    lines = (RELEASED / f"{name}.txt").read_text().splitlines()
    return {key: tuple(int(d) for d in dims.split(",")) for key, dims in (line.split(" ") for line in lines)}


@pytest.mark.parametrize("name, shapes", [
    ("controlnet_sd15", nm.controlnet_shapes()),
    ("mm_sd15_v3", nm.motion_module_shapes("v3")),
    ("animatelcm_sd15", nm.motion_module_shapes("animatelcm")),
])
def test_stand_in_has_the_released_key_set_and_shapes(name, shapes):
    assert shapes == released(name)


def test_released_lists_have_the_known_sizes():
    # control_sd15_canny: 361M parameters; mm_sd15_v3: 417M (+ its 32-frame sinusoids); AnimateLCM adds a middle module.
    def parameters(shapes):
        return sum(torch.Size(s).numel() for k, s in shapes.items() if not k.endswith(".pe"))
    assert (len(released("controlnet_sd15")), parameters(released("controlnet_sd15"))) == (340, 361_279_120)
    assert len(released("mm_sd15_v3")) == 560 and len(released("animatelcm_sd15")) == 546


def test_controlnet_is_what_sd_webui_controlnet_guesses_as_an_sd15_controlnet():
    """controlnet_model_guess.build_model_by_guess: prefix stripped, a hint block, no label_emb, 768 context."""
    keys = {k.removeprefix(nm.CONTROLNET_PREFIX): s for k, s in nm.controlnet_shapes().items()}
    assert all(k.startswith(nm.CONTROLNET_PREFIX) for k in nm.controlnet_shapes())
    assert keys["input_hint_block.0.weight"] == (16, 3, 3, 3) and "label_emb.0.0.bias" not in keys
    assert keys["input_blocks.5.1.transformer_blocks.0.attn2.to_k.weight"] == (640, 768)
    assert keys["input_blocks.1.1.proj_in.weight"] == (320, 320, 1, 1)  # SD 1.5: 1x1 convs, not linears


def test_motion_modules_are_what_sd_webui_animatediff_guesses_v3_and_animatelcm():
    """motion_module.MotionModuleType.get_mm_type: "mid_block" and no key containing "pe" -> AnimateLCM;
    no mid block, a "down_blocks.3" and 32-long encodings -> v3."""
    v3, lcm = nm.motion_module_shapes("v3"), nm.motion_module_shapes("animatelcm")
    assert not any("mid_block" in k for k in v3) and any("down_blocks.3" in k for k in v3)
    assert {s[1] for k, s in v3.items() if "pe" in k} == {32}
    assert any("mid_block" in k for k in lcm) and not any("pe" in k for k in lcm)


def test_written_files_are_fp16_random_with_nonzero_outputs_and_the_released_sinusoids(tmp_path):
    shapes = {k: s for k, s in nm.motion_module_shapes("v3").items() if k.startswith("down_blocks.0.motion_modules.0.")}
    shapes.update({k: s for k, s in nm.controlnet_shapes().items() if "zero_convs.0." in k})
    path = nm.write_fp16(tmp_path / "part.safetensors", "unit", shapes)
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert {k: tuple(t.shape) for k, t in tensors.items()} == shapes
    assert {t.dtype for t in tensors.values()} == {torch.float16}
    # The zero-initialised outputs of the real recipes are random here, so they change the image.
    for key in ("down_blocks.0.motion_modules.0.temporal_transformer.proj_out.weight",
                "control_model.zero_convs.0.0.weight"):
        assert tensors[key].abs().min() > 0
    pe = tensors["down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"]
    assert torch.equal(pe, nm.sinusoids(32, 320).half())
