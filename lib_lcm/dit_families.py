"""The model families without an LDM UNet that the Forges load (Flux, Chroma, Qwen-Image, Wan, Lumina 2, ...),
recognised by the marker keys the hosts' own model detection tests.

LCM-LoRA exists for none of them; naming the family lets the panel and the API say what is loaded instead of
"an unrecognised architecture". Forge Neo decides a checkpoint's family in
`modules_forge/packages/huggingface_guess/detection.py` (`detect_unet_config`, after ComfyUI's
`model_detection.py`): one marker key per family, tested in a fixed order, under the UNet prefix
`model.diffusion_model.` (`unet_prefix_from_state_dict`; PiD's files use `net.`; a file with bare keys gets the
prefix added by `backend/loader.py`'s `preprocess_state_dict`). `detect_dit_family` tests the same keys in the
same order, then the diffusers-format files Neo converts (`convert_diffusers_mmdit`: Flux, Z-Image). SD 3 (Forge
2.x loads it, Neo does not) is recognised by its MMDiT's `joint_blocks`.

Public API: DIT_FAMILIES (the labels) and detect_dit_family(shapes) -> label or None.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

DIT_FAMILIES = (
    "flux",
    "flux2",
    "chroma",
    "sd3",
    "lumina2",
    "z-image",
    "wan",
    "qwen-image",
    "anima",
    "krea2",
    "ernie-image",
    "pid",
)

# Neo's `unet_prefix_from_state_dict` candidates; anything else is read as bare keys, as its loader does.
_PREFIXES = ("model.diffusion_model.", "net.")

# Lumina 2's next-DiT width tells its two models apart (Neo's `model_list.Lumina2` / `ZImage` match on `dim`).
_LUMINA2_WIDTHS = {2304: "lumina2", 3840: "z-image"}


def _prefix(keys) -> str:
    return next((p for p in _PREFIXES if any(k.startswith(p) for k in keys)), "")


def _flux_family(has) -> str | None:
    """Flux.1, Flux.2 and Chroma share the double/single-stream blocks; Neo's test for all three, then the
    marker of each (Chroma's distilled guidance layer wins over Flux.2's modulation, as there)."""
    key_norm = has("double_blocks.0.img_attn.norm.key_norm.scale") or has("double_blocks.0.img_attn.norm.key_norm.weight")
    if not key_norm or not (has("img_in.weight") or has("distilled_guidance_layer.norms.0.scale")):
        return None
    if has("distilled_guidance_layer.0.norms.0.scale") or has("distilled_guidance_layer.norms.0.scale"):
        return "chroma"
    return "flux2" if has("double_stream_modulation_img.lin.weight") else "flux"


def detect_dit_family(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """The family label (one of DIT_FAMILIES) of a checkpoint given as tensor name -> shape, or None.

    None for anything without one of these families' marker keys, LDM UNets (SD 1.x, SDXL, ...) included.
    """
    prefix = _prefix(shapes)

    def has(name: str) -> bool:
        return prefix + name in shapes

    if has("cap_embedder.1.weight") and (has("noise_refiner.0.attention.k_norm.weight")
                                         or has("layers.0.attention.to_out.0.qweight")):
        return _LUMINA2_WIDTHS.get(int(shapes[prefix + "cap_embedder.1.weight"][0]))
    if has("head.modulation"):
        return "wan"
    # Flux quantised by Nunchaku (SVDQuant) and by bitsandbytes (nf4) carry other marker keys.
    if has("single_transformer_blocks.0.mlp_fc1.qweight"):
        return "flux"
    if has("double_blocks.0.img_attn.proj.weight.quant_state.bitsandbytes__nf4"):
        return "flux"
    family = _flux_family(has)
    if family is not None:
        return family
    markers = (
        ("blocks.0.mlp.layer1.weight", "anima"),
        ("lq_proj.latent_proj.0.weight", "pid"),
        ("txt_norm.weight", "qwen-image"),
        ("txtfusion.projector.weight", "krea2"),
        ("layers.0.mlp.linear_fc2.weight", "ernie-image"),
        ("joint_blocks.0.x_block.attn.qkv.weight", "sd3"),
    )
    found = next((family for name, family in markers if has(name)), None)
    return found if found is not None or prefix else _diffusers_family(shapes)


def _diffusers_family(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """Diffusers-format transformers (bare keys), which Neo converts with `convert_diffusers_mmdit` when its
    detection finds nothing: Z-Image (its width tells it from Lumina 2) and Flux."""
    if "noise_refiner.0.attention.norm_k.weight" in shapes and "noise_refiner.0.attention.to_k.weight" in shapes:
        return _LUMINA2_WIDTHS.get(int(shapes["noise_refiner.0.attention.to_k.weight"][0]))
    if "x_embedder.weight" in shapes and "single_transformer_blocks.0.proj_out.weight" in shapes:
        return "flux"
    return None
