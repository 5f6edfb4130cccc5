"""The tiny fixtures are deterministic and in the layouts the real files and A1111 1.10.1 use."""
from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

from tests.fixtures import layouts, tiny

# --- A1111 1.10.1 extensions-builtin/Lora/networks.py convert_diffusers_name_to_compvis, mirrored ---------

_SUFFIX_CONVERSION = {
    "attentions": {},
    "resnets": {
        "conv1": "in_layers_2",
        "conv2": "out_layers_3",
        "norm1": "in_layers_0",
        "norm2": "out_layers_0",
        "time_emb_proj": "emb_layers_1",
        "conv_shortcut": "skip_connection",
    },
}


def a1111_compvis_name(key: str) -> str:
    def match(regex: str):
        r = re.match(regex, key)
        return [int(x) if re.match(r"\d+", x) else x for x in r.groups()] if r else None

    if m := match(r"lora_unet_conv_in(.*)"):
        return f"diffusion_model_input_blocks_0_0{m[0]}"
    if m := match(r"lora_unet_conv_out(.*)"):
        return f"diffusion_model_out_2{m[0]}"
    if m := match(r"lora_unet_time_embedding_linear_(\d+)(.*)"):
        return f"diffusion_model_time_embed_{m[0] * 2 - 2}{m[1]}"
    if m := match(r"lora_unet_down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)"):
        suffix = _SUFFIX_CONVERSION.get(m[1], {}).get(m[3], m[3])
        return f"diffusion_model_input_blocks_{1 + m[0] * 3 + m[2]}_{1 if m[1] == 'attentions' else 0}_{suffix}"
    if m := match(r"lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)"):
        suffix = _SUFFIX_CONVERSION.get(m[0], {}).get(m[2], m[2])
        return f"diffusion_model_middle_block_{1 if m[0] == 'attentions' else m[1] * 2}_{suffix}"
    if m := match(r"lora_unet_up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)"):
        suffix = _SUFFIX_CONVERSION.get(m[1], {}).get(m[3], m[3])
        return f"diffusion_model_output_blocks_{m[0] * 3 + m[2]}_{1 if m[1] == 'attentions' else 0}_{suffix}"
    if m := match(r"lora_unet_down_blocks_(\d+)_downsamplers_0_conv"):
        return f"diffusion_model_input_blocks_{3 + m[0] * 3}_0_op"
    if m := match(r"lora_unet_up_blocks_(\d+)_upsamplers_0_conv"):
        return f"diffusion_model_output_blocks_{2 + m[0] * 3}_{2 if m[0] > 0 else 1}_conv"
    if m := match(r"lora_te_text_model_encoder_layers_(\d+)_(.+)"):
        return f"transformer_text_model_encoder_layers_{m[0]}_{m[1]}"
    return key


def network_layer_names(shapes: layouts.Shapes, prefix: str) -> dict[str, tuple[int, ...]]:
    """A1111's network layer name (module path, '.' -> '_') -> weight shape, for modules under prefix."""
    return {
        k[len(prefix):-len(".weight")].replace(".", "_"): v
        for k, v in shapes.items()
        if k.startswith(prefix) and k.endswith(".weight")
    }


def read(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def header_shapes(path):
    with safe_open(str(path), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


# --- determinism and files ------------------------------------------------------------------------------------


def test_cli_build_is_byte_identical_to_the_cached_build(tiny_models, tmp_path, capsys):
    assert tiny.main(["--out", str(tmp_path), "--no-sdxl"]) == 0
    printed = [Path(p) for p in capsys.readouterr().out.split()]
    expected = {"tiny-sd15.safetensors", "tiny-sd15.yaml", "tiny-sd15-inpainting.safetensors",
                "tiny-sd15-inpainting.yaml", "lcm-lora-sdv1-5.safetensors", "lcm-lora-sdxl.safetensors",
                "lcm-lora-ssd-1b.safetensors", "tiny-style-sd15.safetensors", "config.json", "vocab.json",
                "merges.txt", "tokenizer_config.json", "special_tokens_map.json"}
    assert {p.name for p in printed} == expected
    for path in printed:
        cached = tiny_models.root / path.relative_to(tmp_path.resolve())
        if path.suffix == ".yaml":  # names its own CLIP folder by absolute path
            text = path.read_text().replace(str(tmp_path.resolve()), str(tiny_models.root))
            assert text == cached.read_text(), path.name
        else:
            assert path.read_bytes() == cached.read_bytes(), path.name


def test_seeds_depend_on_tensor_name_not_order():
    a = tiny.random_tensor("sd1", "x.weight", (4, 4))
    assert torch.equal(a, tiny.random_tensor("sd1", "x.weight", (4, 4)))
    assert not torch.equal(a, tiny.random_tensor("sd1", "y.weight", (4, 4)))


# --- checkpoints -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,label", [("sd15", "sd1"), ("sd15_inpainting", "sd1-inpaint")])
def test_checkpoint_has_the_ldm_layout(tiny_models, name, label):
    path = getattr(tiny_models, name)
    shapes = header_shapes(path)
    assert shapes == tiny.tiny_checkpoint_shapes(label)
    prefixes = {k.split(".")[0] + "." + k.split(".")[1] for k in shapes}
    assert prefixes == {"model.diffusion_model", "first_stage_model.encoder", "first_stage_model.decoder",
                        "first_stage_model.quant_conv", "first_stage_model.post_quant_conv",
                        "cond_stage_model.transformer"}
    # The module names A1111's SD1 code and the LoRA loader rely on.
    for key in ("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
                "model.diffusion_model.middle_block.1.proj_in.weight",
                "model.diffusion_model.output_blocks.11.1.proj_out.weight",
                "model.diffusion_model.output_blocks.2.1.conv.weight",
                "model.diffusion_model.input_blocks.4.0.skip_connection.weight",
                "cond_stage_model.transformer.text_model.embeddings.position_ids",
                "cond_stage_model.transformer.text_model.final_layer_norm.weight"):
        assert key in shapes, key
    in_ch = shapes["model.diffusion_model.input_blocks.0.0.weight"][1]
    assert in_ch == (9 if label == "sd1-inpaint" else 4)
    assert len(shapes["model.diffusion_model.middle_block.1.proj_in.weight"]) == 4  # SD1: 1x1 conv


def test_checkpoint_values_are_usable(tiny_models):
    tensors, _ = read(tiny_models.sd15)
    for key, t in tensors.items():
        if key.endswith("position_ids"):
            assert t.dtype == torch.int64 and t.flatten().tolist() == list(range(77))
            continue
        assert t.dtype == torch.float32, key
        assert torch.isfinite(t).all(), key
        assert t.abs().max() > 0, f"{key} is all zeros"
    # Zero-initialised in the real recipe; random here so the UNet output and LoRAs matter.
    assert tensors["model.diffusion_model.out.2.weight"].std() > 0.01
    ln = tensors["cond_stage_model.transformer.text_model.final_layer_norm.weight"]
    assert not torch.allclose(ln, torch.ones_like(ln))


def test_yaml_is_v1_inference_with_tiny_dims(tiny_models):
    for path, label in ((tiny_models.sd15, "sd1"), (tiny_models.sd15_inpainting, "sd1-inpaint")):
        config = yaml.safe_load(path.with_suffix(".yaml").read_text())
        params = config["model"]["params"]
        unet = tiny.TINY_LAYOUTS[label].unet
        u = params["unet_config"]["params"]
        assert params["unet_config"]["target"] == "ldm.modules.diffusionmodules.openaimodel.UNetModel"
        assert (u["model_channels"], u["channel_mult"], u["num_res_blocks"], u["context_dim"], u["in_channels"]) == (
            unet.model_channels, [1, 2, 4, 4], 2, 32, 9 if label == "sd1-inpaint" else 4)
        assert sorted(u["attention_resolutions"]) == [1, 2, 4]
        assert u["use_linear_in_transformer"] is False
        assert u["model_channels"] % 32 == 0 and params["scale_factor"] == 0.18215
        dd = params["first_stage_config"]["params"]["ddconfig"]
        assert len(dd["ch_mult"]) == 4 and dd["z_channels"] == 4  # 8x downsampling, 4 latent channels
        cond = params["cond_stage_config"]
        assert cond["target"] == "ldm.modules.encoders.modules.FrozenCLIPEmbedder"
        assert cond["params"]["version"] == str(tiny_models.clip_dir)
        assert config["model"]["target"].endswith("LatentInpaintDiffusion" if label == "sd1-inpaint" else ".LatentDiffusion")


@pytest.mark.parametrize("name,label", [("sdxl", "sdxl"), ("ssd1b", "ssd1b")])
def test_sdxl_checkpoints_have_the_sgm_layout(tiny_models, name, label):
    path = getattr(tiny_models, name)
    with safe_open(str(path), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys() if not k.endswith("position_ids")}
    assert shapes == tiny.tiny_checkpoint_shapes(label)
    assert dtypes == {"F16"}  # like the released SDXL files
    assert {k.split(".")[0] for k in shapes} == {"model", "first_stage_model", "conditioner"}
    assert any(k.startswith("conditioner.embedders.0.transformer.text_model.") for k in shapes)
    config = yaml.safe_load(path.with_suffix(".yaml").read_text())["model"]
    assert config["target"] == "sgm.models.diffusion.DiffusionEngine"
    net = config["params"]["network_config"]["params"]
    assert (net["context_dim"], net["adm_in_channels"], net["use_linear_in_transformer"]) == (
        shapes["model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"][1],
        shapes["model.diffusion_model.label_emb.0.0.weight"][1], True)
    clip_l, open_clip, *sizes = config["params"]["conditioner_config"]["params"]["emb_models"]
    assert clip_l["params"]["version"] == str(tiny_models.clip_dir)
    # sgm builds the OpenCLIP tower from open_clip's registered config of this name; open-clip-torch
    # 2.20's ViT-S-32-alt.json: text width 256, 10 layers, embed_dim 256, vocab 49408.
    assert open_clip["params"]["arch"] == "ViT-S-32-alt" and open_clip["params"]["layer"] == "penultimate"
    g = "conditioner.embedders.1.model."
    assert shapes[g + "token_embedding.weight"] == (49408, 256) and shapes[g + "text_projection"] == (256, 256)
    assert len({k.split(".")[6] for k in shapes if k.startswith(g + "transformer.resblocks.")}) == 10
    size_dims = sum(2 * e["params"]["outdim"] for e in sizes)
    assert net["adm_in_channels"] == 256 + size_dims
    assert net["context_dim"] == 256 + shapes["conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"][0]


# --- text encoder folder ----------------------------------------------------------------------------------------


def bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE loop over one lower-cased word."""
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), math.inf), i) for i, (a, b) in enumerate(zip(parts[:-1], parts[1:], strict=True))]
        rank, i = min(pairs)
        if rank == math.inf:
            break
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]
    return parts


def test_clip_folder_is_a_loadable_clip_tokenizer(tiny_models):
    folder = tiny_models.clip_dir
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    merges_text = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    config = json.loads((folder / "config.json").read_text())
    assert merges_text[0].startswith("#version")
    merges = [tuple(line.split(" ")) for line in merges_text[1:]]
    assert sorted(vocab.values()) == list(range(len(vocab))) and config["vocab_size"] == len(vocab)
    byte_chars = list(tiny.bytes_to_unicode().values())
    assert len(set(byte_chars)) == 256
    for token in [*byte_chars, *(c + "</w>" for c in byte_chars), ",</w>", "<|startoftext|>", "<|endoftext|>"]:
        assert token in vocab, token
    assert all(a + b in vocab for a, b in merges)
    ranks = {m: i for i, m in enumerate(merges)}
    for word in ("photo", "cat", "masterpiece", "quality"):
        assert bpe(word, ranks) == [word + "</w>"]
    assert all(p in vocab for p in bpe("unknownword", ranks))
    # Pooling takes argmax(input_ids) in transformers 4.30: the end token must have the highest id.
    assert config["eos_token_id"] == vocab["<|endoftext|>"] == len(vocab) - 1
    assert config["bos_token_id"] == vocab["<|startoftext|>"]
    assert config["model_type"] == "clip_text_model" and config["max_position_embeddings"] == 77
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "CLIPTokenizer" and tokenizer_config["model_max_length"] == 77
    shapes = header_shapes(tiny_models.sd15)
    assert shapes["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] == (
        len(vocab), config["hidden_size"])
    layers = {k.split(".")[5] for k in shapes if ".encoder.layers." in k}
    assert len(layers) == config["num_hidden_layers"]


# --- LoRAs --------------------------------------------------------------------------------------------------------


def lora_modules(tensors):
    return sorted({k.split(".", 1)[0] for k in tensors})


def test_sd15_lcm_lora_has_the_real_module_set(tiny_models):
    tensors, metadata = read(tiny_models.lcm_lora_sd15)
    assert metadata == {"format": "pt"}
    modules = lora_modules(tensors)
    # The released lcm-lora-sdv1-5: 278 modules, 834 tensors.
    assert len(modules) == 278 and len(tensors) == 834
    count = lambda pat: sum(1 for m in modules if re.search(pat, m))  # noqa: E731
    assert count(r"_transformer_blocks_\d+_attn[12]_to_(q|k|v|out_0)$") == 16 * 8
    assert count(r"_ff_net_(0_proj|2)$") == 16 * 2
    assert count(r"_proj_(in|out)$") == 16 * 2
    assert count(r"_resnets_\d+_(conv1|conv2|time_emb_proj)$") == 22 * 3
    assert count(r"_conv_shortcut$") == 14
    assert count(r"_downsamplers_0_conv$") == 3 and count(r"_upsamplers_0_conv$") == 3
    assert all(m.startswith("lora_unet_") for m in modules)
    for m in modules:
        assert tensors[f"{m}.alpha"].shape == () and tensors[f"{m}.alpha"].item() == tiny.LCM_LORA_ALPHA
        assert tensors[f"{m}.lora_down.weight"].shape[0] == tiny.LCM_LORA_RANK
    assert {t.dtype for t in tensors.values()} == {torch.float16}


# A1111 1.10.1 maps `up_blocks_0_upsamplers_0_conv` to output_blocks.2.1.conv, right for SD1 (no attention
# in up block 0) but not SDXL/SSD-1B (output_blocks.2.2.conv), and its `lora_unet` -> `diffusion_model`
# fallback misses too: A1111 leaves that one module of the real SDXL LCM-LoRAs unapplied (logged at debug).
A1111_UNMATCHED = {
    "sd1": {},
    "sdxl": {"lora_unet_up_blocks_0_upsamplers_0_conv": "diffusion_model_output_blocks_2_2_conv"},
    "ssd1b": {"lora_unet_up_blocks_0_upsamplers_0_conv": "diffusion_model_output_blocks_2_2_conv"},
}
LCM_LORAS = [("sd1", "lcm_lora_sd15"), ("sdxl", "lcm_lora_sdxl"), ("ssd1b", "lcm_lora_ssd1b")]


def a1111_lookup(key: str, layer_names) -> str | None:
    """networks.load_network's lookup for a UNet LoRA module: converted name, then the SDXL fallback."""
    for candidate in (a1111_compvis_name(key), key.replace("lora_unet", "diffusion_model")):
        if candidate in layer_names:
            return candidate
    return None


@pytest.mark.parametrize("label,attr", LCM_LORAS)
def test_lora_keys_map_to_unet_modules_under_a1111_conversion(tiny_models, label, attr):
    tensors, metadata = read(getattr(tiny_models, attr))
    assert metadata == {"format": "pt"}
    unet = network_layer_names(tiny.tiny_checkpoint_shapes(label), "model.")
    modules = lora_modules(tensors)
    unmatched = {m for m in modules if a1111_lookup(m, unet) is None}
    assert unmatched == set(A1111_UNMATCHED[label])
    for m in modules:
        target = a1111_lookup(m, unet) or A1111_UNMATCHED[label][m]
        weight = unet[target]
        down, up = tensors[f"{m}.lora_down.weight"].shape, tensors[f"{m}.lora_up.weight"].shape
        assert down[1:] == weight[1:] and up[0] == weight[0], m
        assert up[1] == down[0] and up[2:] == (1,) * (len(weight) - 2), m
    # SD1 transformers project with 1x1 convs, SD2/SDXL with linears; the LoRA follows the UNet.
    proj_in = next(m for m in modules if m.endswith("_proj_in"))
    assert len(tensors[f"{proj_in}.lora_down.weight"].shape) == (4 if label == "sd1" else 2)


ADAPTED = re.compile(
    r"(to_[qkv]|to_out_0|proj_in|proj_out|ff_net_0_proj|ff_net_2|in_layers_2|out_layers_3|emb_layers_1"
    r"|skip_connection|_0_op|_conv)$"
)


@pytest.mark.parametrize("label,attr", LCM_LORAS)
def test_lcm_loras_cover_every_adaptable_unet_module(tiny_models, label, attr):
    tensors, _ = read(getattr(tiny_models, attr))
    unet = network_layer_names(tiny.tiny_checkpoint_shapes(label), "model.")
    targets = {a1111_lookup(m, unet) or A1111_UNMATCHED[label][m] for m in lora_modules(tensors)}
    wanted = {n for n, s in unet.items() if len(s) >= 2 and ADAPTED.search(n) and "input_blocks_0_0" not in n}
    assert targets == wanted


def test_style_lora_is_a_kohya_unet_and_text_encoder_lora(tiny_models):
    tensors, metadata = read(tiny_models.style_lora)
    assert metadata["ss_network_module"] == "networks.lora"
    modules = lora_modules(tensors)
    te = [m for m in modules if m.startswith("lora_te_")]
    unet_mods = [m for m in modules if m.startswith("lora_unet_")]
    assert te and unet_mods and len(te) + len(unet_mods) == len(modules)
    text = network_layer_names(tiny.tiny_checkpoint_shapes("sd1"), "cond_stage_model.")
    unet = network_layer_names(tiny.tiny_checkpoint_shapes("sd1"), "model.")
    for m in te:
        assert a1111_compvis_name(m) in text, m
    for m in unet_mods:
        assert a1111_compvis_name(m) in unet, m
    lcm, _ = read(tiny_models.lcm_lora_sd15)
    shared = set(unet_mods) & set(lora_modules(lcm))
    assert shared and not any(torch.equal(tensors[f"{m}.lora_up.weight"][:, :1], lcm[f"{m}.lora_up.weight"][:, :1])
                              for m in shared)


# --- real-size layout generators (used by the architecture tests) ---------------------------------------------------


def n_params(shapes, prefix):
    return sum(math.prod(s) for k, s in shapes.items() if k.startswith(prefix) and not k.endswith("position_ids"))


def test_real_layouts_have_the_published_parameter_counts():
    sd15 = layouts.real_checkpoint_shapes("sd1")
    assert n_params(sd15, "model.diffusion_model.") == 859_520_964
    assert n_params(sd15, "first_stage_model.") == 83_653_863
    assert n_params(sd15, "cond_stage_model.") == 123_060_480
    assert n_params(layouts.real_checkpoint_shapes("sd2"), "model.diffusion_model.") == 865_910_724
    assert n_params(layouts.real_checkpoint_shapes("sdxl"), "model.diffusion_model.") == 2_567_463_684


def test_real_sdxl_family_layouts():
    sdxl = layouts.real_checkpoint_shapes("sdxl")
    ssd = layouts.real_checkpoint_shapes("ssd1b")
    # A1111's convert_sdxl_to_ssd: no middle transformer, 4 (not 10) blocks in input 7/8 and output 0/1.
    assert "model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q.weight" in sdxl
    assert not any(k.startswith("model.diffusion_model.middle_block.1.") for k in ssd)
    assert "model.diffusion_model.input_blocks.7.1.transformer_blocks.3.attn1.to_q.weight" in ssd
    assert "model.diffusion_model.input_blocks.7.1.transformer_blocks.4.attn1.to_q.weight" not in ssd
    assert "model.diffusion_model.output_blocks.2.1.transformer_blocks.9.attn1.to_q.weight" in ssd
    assert "model.diffusion_model.output_blocks.5.1.transformer_blocks.1.attn1.to_q.weight" not in ssd
    assert sdxl["model.diffusion_model.label_emb.0.0.weight"] == (1280, 2816)
    assert sdxl["conditioner.embedders.1.model.text_projection"] == (1280, 1280)
    refiner = layouts.real_checkpoint_shapes("sdxl-refiner")
    assert refiner["model.diffusion_model.input_blocks.0.0.weight"] == (384, 4, 3, 3)
    assert not any(k.startswith("conditioner.embedders.1.") for k in refiner)
    sdxl_lora = layouts.lora_module_shapes(sdxl)
    assert len(sdxl_lora) == 70 * 10 + 11 * 2 + 17 * 3 + 11 + 2 + 2


def test_cache_prunes_only_other_versions_older_than_a_day(tmp_path):
    now = time.time()
    for name, age in (("tiny-v1-old", 2 * 86400), ("tiny-v1-recent", 3600), ("tiny-v1-current", 3 * 86400)):
        (tmp_path / name).mkdir()
        (tmp_path / name / ".complete").write_text("ok\n")
        os.utime(tmp_path / name / ".complete", (now - age, now - age))
    (tmp_path / "other-tool-cache").mkdir()
    tiny._prune_stale(tmp_path, keep=tmp_path / "tiny-v1-current")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other-tool-cache", "tiny-v1-current", "tiny-v1-recent"]
