"""Which Stable Diffusion family a checkpoint is, from its tensor names and shapes alone.

Public API (other modules code against these names):
- ARCHITECTURES: the labels detect_architecture() returns; SD_ARCHITECTURES: those of the Stable Diffusion UNets.
- detect_architecture(shapes) -> label.
- detect_checkpoint(path) -> label (safetensors header; other formats -> "unknown").

Which LCM-LoRA a label gets is the registry's to say: lib_lcm.weights.registry.variant_for_architecture.
The Forges' other families (Flux, Chroma, Qwen-Image, Wan, Lumina 2, ...: lib_lcm.dit_families) get their own
labels, so that what is loaded can be named; no LCM-LoRA exists for any of them.

Detection reads the UNet's block structure (levels, transformer blocks per block, whether the middle block
has attention, linear or 1x1-conv transformer projections, class-embedding MLP, input channels), never
absolute widths, so pruned-width or test-size models of the same structure are recognised too. The text
encoder keys, where present, must agree with the UNet's family.

Layouts understood: single-file LDM/SGM checkpoints as A1111 loads them (`model.diffusion_model.*`,
`first_stage_model.*`, `cond_stage_model.*` or `conditioner.embedders.N.*`) and UNet-only files under
`model.diffusion_model.` or `diffusion_model.`. Diffusers-format UNets (`down_blocks.*`, `unet.*`), LoRAs and
families neither here nor in lib_lcm.dit_families (Stable Cascade, ...) are "unknown". Mugen (Forge Neo) is
SDXL's UNet on a 32-channel latent: "mugen", never "sdxl".
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lib_lcm.dit_families import DIT_FAMILIES, detect_dit_family
from lib_lcm.safetensors_header import read_shapes

# The Stable Diffusion UNet families (an LDM UNet of their own signature, below).
SD_ARCHITECTURES = (
    "sd1",
    "sd1-inpaint",
    "sd2",
    "sdxl",
    "sdxl-inpaint",
    "ssd1b",
    "sdxl-refiner",
)
ARCHITECTURES = (*SD_ARCHITECTURES, "mugen", *DIT_FAMILIES, "unknown")
# How the panel, the API and the CLI name each label to a user.
ARCHITECTURE_NAMES = {
    "sd1": "SD 1.x",
    "sd1-inpaint": "SD 1.x inpainting",
    "sd2": "SD 2.x",
    "sdxl": "SDXL",
    "sdxl-inpaint": "SDXL inpainting",
    "ssd1b": "SSD-1B",
    "sdxl-refiner": "SDXL refiner",
    "mugen": "Mugen",
    "flux": "Flux.1",
    "flux2": "Flux.2",
    "chroma": "Chroma",
    "sd3": "SD 3",
    "lumina2": "Lumina 2",
    "z-image": "Z-Image",
    "wan": "Wan 2.1",
    "qwen-image": "Qwen-Image",
    "anima": "Anima",
    "krea2": "Krea 2",
    "ernie-image": "ERNIE-Image",
    "pid": "PiD",
    "unknown": "an unrecognised architecture",
}


def architecture_name(label: str) -> str:
    return ARCHITECTURE_NAMES.get(label, label)

_UNET_PREFIXES = ("model.diffusion_model.", "diffusion_model.")


@dataclass(frozen=True)
class _UNetStructure:
    """What decides the family; depths count transformer blocks per block (0 = no attention)."""

    in_channels: int
    out_channels: int
    input_depths: tuple[int, ...]  # input_blocks 1.. (downsamplers included, as 0)
    middle_depth: int | None  # None: the middle block is a lone ResBlock
    output_depths: tuple[int, ...]
    linear_projection: bool  # SpatialTransformer proj_in is nn.Linear (SD2/SDXL), not a 1x1 conv (SD1)
    class_embedding: bool  # label_emb: SDXL's size/pooled-text conditioning
    context_dim: int  # attn2 key input width: the text encoder width the UNet expects


# Signatures of the real UNets (transformer blocks per input/output block, middle block).
_SD1_DEPTHS = ((1, 1, 0, 1, 1, 0, 1, 1, 0, 0, 0), 1, (0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1))
_SDXL_DEPTHS = ((0, 0, 0, 2, 2, 0, 10, 10), 10, (10, 10, 10, 2, 2, 2, 0, 0, 0))
_SSD1B_DEPTHS = ((0, 0, 0, 2, 2, 0, 4, 4), None, (4, 4, 10, 2, 1, 1, 0, 0, 0))
_REFINER_DEPTHS = ((0, 0, 0, 4, 4, 0, 4, 4, 0, 0, 0), 4, (0, 0, 0, 4, 4, 4, 4, 4, 4, 0, 0, 0))

# Mugen's UNet predicts Flux.2's 32-channel latent (Neo's `model_list.Mugen`: SDXL's config, `out_channels` 32).
_MUGEN_CHANNELS = 32

_BLOCK_RE = re.compile(r"(input_blocks|output_blocks)\.(\d+)\.")
_INPUT_TB_RE = re.compile(r"input_blocks\.(\d+)\.1\.transformer_blocks\.(\d+)\.")
_OUTPUT_TB_RE = re.compile(r"output_blocks\.(\d+)\.1\.transformer_blocks\.(\d+)\.")
_MIDDLE_TB_RE = re.compile(r"middle_block\.1\.transformer_blocks\.(\d+)\.")


def _unet_structure(shapes: Mapping[str, Sequence[int]]) -> _UNetStructure | None:
    prefix = next((p for p in _UNET_PREFIXES if p + "input_blocks.0.0.weight" in shapes), None)
    if prefix is None:
        return None
    unet = {k[len(prefix):]: tuple(v) for k, v in shapes.items() if k.startswith(prefix)}
    conv_in = unet["input_blocks.0.0.weight"]
    if len(conv_in) != 4:
        return None

    counts: dict[str, int] = {"input_blocks": 0, "output_blocks": 0}
    for key in unet:
        m = _BLOCK_RE.match(key)
        if m:
            counts[m.group(1)] = max(counts[m.group(1)], int(m.group(2)) + 1)
    if counts["input_blocks"] < 2 or counts["output_blocks"] < 1:
        return None

    def depth(layers: set[int]) -> int:
        # A gap in the numbering is no model we know: -1 matches no signature.
        return len(layers) if layers == set(range(len(layers))) else -1

    def depths(pattern: re.Pattern, n_blocks: int, first: int) -> tuple[int, ...]:
        found: list[set[int]] = [set() for _ in range(n_blocks)]
        for key in unet:
            m = pattern.match(key)
            if m:
                found[int(m.group(1))].add(int(m.group(2)))
        return tuple(depth(layers) for layers in found[first:])

    middle_layers = {int(m.group(1)) for k in unet if (m := _MIDDLE_TB_RE.match(k))}
    if middle_layers:
        middle_depth: int | None = depth(middle_layers)
    elif "middle_block.0.in_layers.0.weight" in unet and "middle_block.2.in_layers.0.weight" not in unet:
        middle_depth = None
    else:
        return None

    proj_in = [v for k, v in unet.items() if k.endswith(".proj_in.weight")]
    to_k = [v for k, v in unet.items() if k.endswith(".attn2.to_k.weight")]
    if not proj_in or not to_k:
        return None
    return _UNetStructure(
        in_channels=conv_in[1],
        out_channels=unet.get("out.2.weight", (4,))[0],
        input_depths=depths(_INPUT_TB_RE, counts["input_blocks"], 1),
        middle_depth=middle_depth,
        output_depths=depths(_OUTPUT_TB_RE, counts["output_blocks"], 0),
        linear_projection=len(proj_in[0]) == 2,
        class_embedding="label_emb.0.0.weight" in unet,
        context_dim=to_k[0][1],
    )


def _text_width(shapes: Mapping[str, Sequence[int]], key: str) -> int | None:
    shape = shapes.get(key)
    return int(shape[-1]) if shape is not None and len(shape) == 2 else None


def _has_prefix(shapes: Mapping[str, Sequence[int]], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in shapes)


def _sd_family(s: _UNetStructure, shapes: Mapping[str, Sequence[int]]) -> str:
    if (s.input_depths, s.middle_depth, s.output_depths) != _SD1_DEPTHS or _has_prefix(shapes, "conditioner."):
        return "unknown"
    clip_l = _text_width(shapes, "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight")
    open_clip = _text_width(shapes, "cond_stage_model.model.token_embedding.weight")
    if clip_l is not None and open_clip is not None:
        return "unknown"
    if s.linear_projection:
        if clip_l is not None or (open_clip is not None and open_clip != s.context_dim):
            return "unknown"
        return "sd2"  # SD2.x base, v-prediction, inpainting and depth share this UNet
    if open_clip is not None or (clip_l is not None and clip_l != s.context_dim):
        return "unknown"
    if s.out_channels != 4:
        return "unknown"
    return {4: "sd1", 9: "sd1-inpaint"}.get(s.in_channels, "unknown")


def _sdxl_family(s: _UNetStructure, shapes: Mapping[str, Sequence[int]]) -> str:
    if not s.linear_projection or _has_prefix(shapes, "cond_stage_model."):
        return "unknown"
    depths = (s.input_depths, s.middle_depth, s.output_depths)
    clip_l = _text_width(shapes, "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight")
    big_g = _text_width(shapes, "conditioner.embedders.1.model.token_embedding.weight")
    refiner_g = _text_width(shapes, "conditioner.embedders.0.model.token_embedding.weight")
    has_encoders = any(w is not None for w in (clip_l, big_g, refiner_g))

    if depths == _REFINER_DEPTHS:
        if has_encoders and (refiner_g != s.context_dim or clip_l is not None or big_g is not None):
            return "unknown"
        return "sdxl-refiner" if s.in_channels == 4 else "unknown"

    if depths not in (_SDXL_DEPTHS, _SSD1B_DEPTHS):
        return "unknown"
    # SDXL's cross-attention context is the CLIP-L and OpenCLIP-bigG hidden states concatenated.
    if has_encoders and (clip_l is None or big_g is None or clip_l + big_g != s.context_dim):
        return "unknown"
    if depths == _SDXL_DEPTHS and s.out_channels == _MUGEN_CHANNELS:
        return "mugen"
    if s.out_channels != 4:
        return "unknown"
    if depths == _SSD1B_DEPTHS:
        return "ssd1b" if s.in_channels == 4 else "unknown"
    return {4: "sdxl", 9: "sdxl-inpaint"}.get(s.in_channels, "unknown")


def detect_architecture(shapes: Mapping[str, Sequence[int]]) -> str:
    """Family label (one of ARCHITECTURES) of a checkpoint given as tensor name -> shape.

    Args:
        shapes: every tensor name of the file mapped to its shape (any int sequence; torch.Size works,
            so `{k: v.shape for k, v in state_dict.items()}` does).

    Returns:
        "sd1" / "sd1-inpaint" (9 input channels) / "sd2" (SD2.x incl. v-prediction and its inpainting
        and depth variants) / "sdxl" / "sdxl-inpaint" / "ssd1b" / "sdxl-refiner" / "mugen", one of
        lib_lcm.dit_families.DIT_FAMILIES, or "unknown" for anything else, including a structure that
        matches no family exactly (e.g. other pruned SDXLs) and text encoders that do not fit the UNet.
    """
    s = _unet_structure(shapes)
    if s is None:
        return detect_dit_family(shapes) or "unknown"
    if s.class_embedding:
        return _sdxl_family(s, shapes)
    return _sd_family(s, shapes)


def detect_checkpoint(path: str | os.PathLike) -> str:
    """Family label of a checkpoint file, read from its safetensors header only.

    Pickle-based formats (.ckpt, .pt, .bin) are never unpickled and, like any file that is not a complete
    safetensors file (a truncated copy included), give "unknown". A missing or unreadable file raises OSError.
    """
    try:
        shapes = read_shapes(path)
    except ValueError:
        return "unknown"
    return detect_architecture(shapes)
