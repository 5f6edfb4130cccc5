"""Print the key -> shape layouts of Forge Neo's own model classes for the families LCM-LoRA has none for, as
tests/fixtures/released_layouts/neo_families.txt holds them (tests/test_dit_families.py reads that file;
tests/e2e/test_neo_families.py compares it with this script's output on a Neo checkout).

    cd $SD_WEBUI_DIR && $SD_WEBUI_PYTHON /path/to/dump_neo_family_layouts.py

Each family starts from the keys and shapes Neo's detection reads (`detect_unet_config`) at the released model's
sizes; Neo's own `huggingface_guess.guess` turns them into its config, Neo's loader's class for that family is
built from it on the meta device (shapes only, no memory), and the whole state dict is run through
`huggingface_guess.guess` again: it must give the same class and config, or the script stops. The real SD 1.5,
SDXL and SSD-1B layouts (tests/fixtures/layouts.py) go through the same guess, and what it answers is printed:
Neo's model list has no SSD-1B.
"""
import json
import os
import re
import sys
from collections import defaultdict

# family -> (Neo's model_list class, the seed: key -> shape, at the released model's sizes)
D, S = "double_blocks.{}.img_attn.norm.key_norm.scale", "single_blocks.{}.linear1.weight"


def blocks(template, n, shape):
    return {template.format(i): shape for i in range(n)}


SEEDS = {
    "flux-dev": ("Flux", {**blocks(D, 19, (128,)), **blocks(S, 38, (21504, 3072)), "img_in.weight": (3072, 64),
                          "txt_in.weight": (3072, 4096), "vector_in.in_layer.weight": (3072, 768),
                          "guidance_in.in_layer.weight": (3072, 256)}),
    "flux-schnell": ("FluxSchnell", {**blocks(D, 19, (128,)), **blocks(S, 38, (21504, 3072)), "img_in.weight": (3072, 64),
                                     "txt_in.weight": (3072, 4096), "vector_in.in_layer.weight": (3072, 768)}),
    "chroma": ("Chroma", {**blocks(D, 19, (128,)), **blocks(S, 38, (21504, 3072)), "img_in.weight": (3072, 64),
                          "txt_in.weight": (3072, 4096), "distilled_guidance_layer.norms.0.scale": (5120,)}),
    "flux2-klein-4b": ("Flux2K4B", {**blocks(D, 5, (128,)), **blocks(S, 20, (27648, 3072)), "img_in.weight": (3072, 128),
                                    "txt_in.weight": (3072, 7680), "double_stream_modulation_img.lin.weight": (18432, 3072)}),
    "lumina2": ("Lumina2", {"cap_embedder.1.weight": (2304, 2304), "noise_refiner.0.attention.k_norm.weight": (96,),
                            **blocks("layers.{}.attention.qkv.weight", 26, (4608, 2304))}),
    "z-image": ("ZImage", {"cap_embedder.1.weight": (3840, 2560), "noise_refiner.0.attention.k_norm.weight": (128,),
                           "cap_pad_token": (1, 3840), **blocks("layers.{}.ffn_norm1.weight", 30, (3840,))}),
    "wan2.1-t2v-1.3b": ("WAN21_T2V", {"head.modulation": (1, 2, 1536), "head.head.weight": (64, 1536),
                                      "blocks.0.ffn.0.weight": (8960, 1536), "patch_embedding.weight": (1536, 16, 1, 2, 2),
                                      **blocks("blocks.{}.norm3.weight", 30, (1536,))}),
    "qwen-image": ("QwenImage", {"txt_norm.weight": (3584,), "img_in.weight": (3072, 64),
                                 **blocks("transformer_blocks.{}.img_mod.1.weight", 60, (18432, 3072))}),
    "anima": ("Anima", {"blocks.0.mlp.layer1.weight": (8192, 2048), "x_embedder.proj.1.weight": (2048, 68),
                        "llm_adapter.blocks.0.cross_attn.q_proj.weight": (1024, 1024),
                        **blocks("blocks.{}.mlp.layer2.weight", 28, (2048, 8192))}),
}


def meta_state_dict(shapes, prefix="model.diffusion_model."):
    import torch

    return {prefix + k: torch.empty(v, device="meta") for k, v in shapes.items()}


def build(guess):
    """Neo's loader's class for the guessed family (backend/loader.py, `load_huggingface_component`), on meta."""
    import torch

    name = type(guess).__name__
    if name in ("Flux", "FluxSchnell", "Flux2K4B", "Flux2K9B"):
        from backend.nn.flux import IntegratedFluxTransformer2DModel as cls
    elif name == "Chroma":
        from backend.nn.chroma import IntegratedChromaTransformer2DModel as cls
    elif name in ("Lumina2", "ZImage"):
        from backend.nn.lumina import NextDiT as cls
    elif name in ("WAN21_T2V", "WAN21_I2V"):
        from backend.nn.wan import WanModel as cls
    elif name == "QwenImage":
        from backend.nn.qwen import QwenImageTransformer2DModel as cls
    elif name == "Anima":
        from backend.nn.anima import Anima as cls
    else:
        raise SystemExit(f"no class for {name}")
    with torch.device("meta"):
        return cls(**guess.unet_config.copy())


# Black Forest Labs' files name an RMSNorm's parameter `scale`; Neo's classes build torch's nn.RMSNorm (`weight`),
# and its RMSNorm operation renames `scale` to `weight` as it loads (backend/operations.py, "# Flux").
BFL_NAMING = ("Flux", "FluxSchnell", "Flux2K4B", "Flux2K9B", "Chroma")


def released_names(model):
    import torch

    norms = {name for name, module in model.named_modules() if isinstance(module, torch.nn.RMSNorm)}
    return {(key[:-len("weight")] + "scale" if key.endswith(".weight") and key[:-len(".weight")] in norms else key): value
            for key, value in model.state_dict().items()}


def compact(state_dict):
    """`key shape` lines; keys that differ only in their first block number, with one shape, as `a.{0-18}.b`."""
    groups = defaultdict(list)
    for key, value in state_dict.items():
        match = re.search(r"\.(\d+)\.", "." + key)
        template, index = (key, None) if match is None else (
            key[:match.start()] + "{}" + key[match.end() - 2:], int(match[1]))
        groups[(template, tuple(value.shape))].append(index)
    lines = []
    for (template, shape), indices in groups.items():
        shape_text = ",".join(map(str, shape))
        if indices == [None]:
            lines.append(f"{template} {shape_text}")
        elif sorted(indices) == list(range(min(indices), max(indices) + 1)) and len(indices) > 1:
            span = "{" + f"{min(indices)}-{max(indices)}" + "}"
            lines.append(f"{template.format(span)} {shape_text}")
        else:
            lines.extend(f"{template.format(i)} {shape_text}" for i in sorted(indices))
    return sorted(lines)


def main():
    webui = os.getcwd()
    sys.path[:0] = [webui, os.path.join(webui, "modules_forge", "packages")]
    sys.argv = sys.argv[:1] + ["--cpu"]  # Neo's backend parses its flags at import
    import huggingface_guess

    layouts, answers = {}, {}
    for family, (expected, seed) in SEEDS.items():
        guess = huggingface_guess.guess(meta_state_dict(seed))
        if type(guess).__name__ != expected:
            raise SystemExit(f"{family}: Neo guessed {type(guess).__name__} from the seed, not {expected}")
        model = build(guess)
        state_dict = released_names(model) if expected in BFL_NAMING else model.state_dict()
        # the seed's keys the class does not hold: those Neo's loader moves to another component (Anima's
        # `llm_adapter`, into its text encoder)
        state_dict.update({k: v for k, v in meta_state_dict(seed, prefix="").items() if k not in state_dict})
        again = huggingface_guess.guess({"model.diffusion_model." + k: v for k, v in state_dict.items()})
        if type(again).__name__ != expected or again.unet_config != guess.unet_config:
            raise SystemExit(f"{family}: Neo's guess of the built layout differs: {type(again).__name__} {again.unet_config}")
        layouts[family] = compact(state_dict)
        answers[family] = expected
    print("LAYOUTS " + json.dumps({"layouts": layouts, "neo_classes": answers, "ldm_unets": ldm_unet_answers(huggingface_guess)}))


def ldm_unet_answers(huggingface_guess):
    """What Neo's guess answers for the real SD 1.5, SDXL and SSD-1B layouts (tests/fixtures/layouts.py): its class
    name, or the error it raises."""
    sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from tests.fixtures import layouts as ldm_layouts

    answers = {}
    for label in ("sd1", "sdxl", "ssd1b"):
        shapes = {k: v for k, v in ldm_layouts.real_checkpoint_shapes(label).items()}
        try:
            answers[label] = type(huggingface_guess.guess(meta_state_dict(shapes, prefix=""))).__name__
        except Exception as e:  # what a user loading such a file sees
            answers[label] = f"{type(e).__name__}: {e}"
    return answers


if __name__ == "__main__":
    main()
