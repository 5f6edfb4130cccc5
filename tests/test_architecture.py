"""lib_lcm.architecture on real-size key sets (shapes only), tiny fixtures, and files that are no model."""
from __future__ import annotations

import json
import re
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lib_lcm import architecture
from lib_lcm.architecture import (
    ARCHITECTURES,
    detect_architecture,
    detect_checkpoint,
    lcm_variant_for,
    read_safetensors_shapes,
)
from tests.fixtures import layouts, tiny

LABELS = [label for label in ARCHITECTURES if label != "unknown"]


def only(shapes, *prefixes):
    return {k: v for k, v in shapes.items() if k.startswith(prefixes)}


def without(shapes, *prefixes):
    return {k: v for k, v in shapes.items() if not k.startswith(prefixes)}


def write_header(path, header: dict, data: bytes = b"") -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.mark.parametrize("label", LABELS)
def test_real_layouts(label):
    assert detect_architecture(layouts.real_checkpoint_shapes(label)) == label


@pytest.mark.parametrize("label", LABELS)
def test_tiny_layouts(label):
    assert detect_architecture(tiny.tiny_checkpoint_shapes(label)) == label


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("size", ["real", "tiny"])
def test_unet_only_files(label, size):
    shapes = layouts.real_checkpoint_shapes(label) if size == "real" else tiny.tiny_checkpoint_shapes(label)
    unet = only(shapes, "model.diffusion_model.")
    assert detect_architecture(unet) == label
    bare = {k[len("model."):]: v for k, v in unet.items()}
    assert detect_architecture(bare) == label


def test_v_prediction_and_torch_sizes():
    # SD2 768-v has the SD2 base shapes; a state dict's torch.Size values work as shapes.
    shapes = {k: torch.Size(v) for k, v in layouts.real_checkpoint_shapes("sd2").items()}
    assert detect_architecture(shapes) == "sd2"


def test_tiny_files_on_disk(tiny_models):
    assert detect_checkpoint(tiny_models.sd15) == "sd1"
    assert detect_checkpoint(tiny_models.sd15_inpainting) == "sd1-inpaint"
    assert detect_checkpoint(tiny_models.sdxl) == "sdxl"
    assert detect_checkpoint(tiny_models.ssd1b) == "ssd1b"
    for lora in (tiny_models.lcm_lora_sd15, tiny_models.lcm_lora_sdxl, tiny_models.style_lora):
        assert detect_checkpoint(lora) == "unknown"


@pytest.mark.parametrize(
    "label,text_encoder_from",
    [("sd1", "sd2"), ("sd2", "sd1"), ("sdxl", "sdxl-refiner"), ("sdxl-refiner", "sdxl"), ("ssd1b", "sd1")],
)
def test_text_encoder_of_another_family_is_unknown(label, text_encoder_from):
    unet = only(layouts.real_checkpoint_shapes(label), "model.diffusion_model.")
    text = without(layouts.real_checkpoint_shapes(text_encoder_from), "model.", "first_stage_model.")
    assert detect_architecture({**unet, **text}) == "unknown"


def test_text_encoder_width_must_fit_the_unet():
    shapes = tiny.tiny_checkpoint_shapes("sd1")
    real_text = only(layouts.real_checkpoint_shapes("sd1"), "cond_stage_model.")
    assert detect_architecture({**without(shapes, "cond_stage_model."), **real_text}) == "unknown"
    sdxl = tiny.tiny_checkpoint_shapes("sdxl")
    assert detect_architecture(without(sdxl, "conditioner.embedders.1.")) == "unknown"


def test_other_structures_are_unknown():
    sd1 = layouts.real_checkpoint_shapes("sd1")
    pix2pix = {**sd1, "model.diffusion_model.input_blocks.0.0.weight": (320, 8, 3, 3)}
    assert detect_architecture(pix2pix) == "unknown"
    # Segmind Vega: SDXL pruned to 1/2 transformer blocks; the SSD-1B LoRA does not fit it.
    vega = layouts.unet_shapes(layouts.UNetConfig(
        model_channels=320, channel_mult=(1, 2, 4), transformer_depth=(0, 1, 2), transformer_depth_middle=None,
        context_dim=2048, use_linear_in_transformer=True, adm_in_channels=2816,
    ))
    assert detect_architecture(vega) == "unknown"
    sdxl = layouts.real_checkpoint_shapes("sdxl")
    sdxl_with_a_gap = {k: v for k, v in sdxl.items() if ".middle_block.1.transformer_blocks.1." not in k}
    assert detect_architecture(sdxl_with_a_gap) == "unknown"
    sdxl_with_one_middle_block = {k: v for k, v in sdxl.items()
                                  if not re.search(r"\.middle_block\.1\.transformer_blocks\.[1-9]\.", k)}
    assert detect_architecture(sdxl_with_one_middle_block) == "unknown"
    ssd_inpaint = {**layouts.real_checkpoint_shapes("ssd1b"),
                   "model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3)}
    assert detect_architecture(ssd_inpaint) == "unknown"
    sd1_without_attention = {k: v for k, v in sd1.items() if ".1.transformer_blocks." not in k}
    assert detect_architecture(sd1_without_attention) == "unknown"


def test_non_ldm_models_are_unknown():
    sd1_unet = only(layouts.real_checkpoint_shapes("sd1"), "model.diffusion_model.")
    diffusers = {}
    for key, shape in sd1_unet.items():
        module, _, param = key[len("model.diffusion_model."):].rpartition(".")
        name = layouts.ldm_to_diffusers_module(module)
        if name:
            diffusers[f"{name}.{param}"] = shape
    assert diffusers
    assert detect_architecture(diffusers) == "unknown"
    assert detect_architecture({"unet." + k: v for k, v in diffusers.items()}) == "unknown"
    sd3 = {"model.diffusion_model.x_embedder.proj.weight": (1536, 16, 2, 2),
           "model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": (4608, 1536)}
    flux = {"double_blocks.0.img_attn.qkv.weight": (9216, 3072), "img_in.weight": (3072, 64)}
    cascade = {"down_blocks.0.0.channelwise.0.weight": (2048, 512), "clip_txt_mapper.weight": (8192, 1280)}
    lora = {f"{k}.lora_down.weight": (4, 32) for k in layouts.lora_module_shapes(sd1_unet)}
    vae_only = only(layouts.real_checkpoint_shapes("sd1"), "first_stage_model.")
    for shapes in (sd3, flux, cascade, lora, vae_only, {}):
        assert detect_architecture(shapes) == "unknown"


def test_lcm_variants():
    assert {label: lcm_variant_for(label) for label in ARCHITECTURES} == {
        "sd1": "sd15", "sd1-inpaint": "sd15", "sd2": None, "sdxl": "sdxl", "sdxl-inpaint": "sdxl",
        "ssd1b": "ssd1b", "sdxl-refiner": None, "unknown": None,
    }
    assert lcm_variant_for("something else") is None


def test_header_shapes_match_safetensors_and_skip_metadata(tiny_models):
    shapes = read_safetensors_shapes(tiny_models.lcm_lora_sd15)
    with safe_open(str(tiny_models.lcm_lora_sd15), "pt") as f:
        assert shapes == {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    assert "__metadata__" not in shapes and shapes


def test_reads_the_header_only(tmp_path):
    # A header whose tensor data is missing: loading any tensor would fail, reading shapes must not.
    path = tmp_path / "truncated.safetensors"
    shapes = tiny.tiny_checkpoint_shapes("sdxl")
    offset, header = 0, {"__metadata__": {"format": "pt"}}
    for k, v in shapes.items():
        size = 4
        for d in v:
            size *= d
        header[k] = {"dtype": "F32", "shape": list(v), "data_offsets": [offset, offset + size]}
        offset += size
    write_header(path, header)
    assert read_safetensors_shapes(path) == shapes
    assert detect_checkpoint(path) == "sdxl"


def test_small_real_safetensors_file(tmp_path):
    path = tmp_path / "x.safetensors"
    save_file({"a": torch.zeros(2, 3), "b": torch.zeros(())}, str(path), metadata={"k": "v"})
    assert read_safetensors_shapes(path) == {"a": (2, 3), "b": ()}
    assert detect_checkpoint(path) == "unknown"


def not_safetensors_files(tmp_path):
    files = {}
    files["empty"] = b""
    files["short"] = b"\x01\x02"
    files["text"] = b"this is a text file, not a model\n" * 4
    files["huge-length"] = struct.pack("<Q", 2**60) + b"{}"
    files["not-json"] = struct.pack("<Q", 4) + b"\xff\xfe{}"
    files["json-list"] = struct.pack("<Q", 2) + b"[]"
    files["no-shape"] = struct.pack("<Q", 25) + b'{"a": {"dtype": "F32"}} '
    files["bad-shape"] = struct.pack("<Q", 35) + b'{"a": {"dtype": "F32","shape":[-1]}}'
    pickle_path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}}, pickle_path)
    files["pickle"] = pickle_path.read_bytes()
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name}.safetensors"
        paths[name].write_bytes(data)
    return paths


def test_not_safetensors_raises_a_clear_value_error(tmp_path):
    for name, path in not_safetensors_files(tmp_path).items():
        with pytest.raises(ValueError, match="is not a safetensors file") as info:
            read_safetensors_shapes(path)
        assert str(path) in str(info.value), name
        assert detect_checkpoint(path) == "unknown", name


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_safetensors_shapes(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError):
        detect_checkpoint(tmp_path / "missing.safetensors")


def test_every_result_is_a_declared_label():
    results = {detect_architecture(layouts.real_checkpoint_shapes(label)) for label in LABELS}
    results.add(detect_architecture({}))
    assert results <= set(architecture.ARCHITECTURES)
