"""The host's LoRA loader (A1111's extensions-builtin/Lora, `networks`): SDXL's up-block upsamplers it drops,
and how many modules of a LoRA it applied."""
from __future__ import annotations

import re
import sys

from modules import hashes, patches, shared

# A1111 1.6-1.10 name `up_blocks.N.upsamplers.0.conv` with SD 1.x's rule (`output_blocks_{2+3N}_{1 if N == 0
# else 2}_conv`, right where up block 0 has no attention); SDXL's and SSD-1B's up block 0 has attention, its
# upsampler is `output_blocks.2.2.conv`, and the loader's `lora_unet` -> `diffusion_model` fallback misses too:
# the module is dropped with a debug-level log line only. Forge maps it from the model's own config.
_UPSAMPLER_KEY = re.compile(r"lora_unet_up_blocks_(\d+)_upsamplers_0_conv$")


def lora_loader():
    """The built-in Lora extension's `networks` module where it loads modules the A1111 way, else None (Forge).

    `module_types` too: reForge keeps A1111's `convert_diffusers_name_to_compvis` as a no-op stub while it loads
    LoRAs through `ldm_patched` and leaves every network's `modules` empty (that would read as 0 applied)."""
    networks = sys.modules.get("networks")
    a1111_way = hasattr(networks, "convert_diffusers_name_to_compvis") and hasattr(networks, "module_types")
    return networks if a1111_way else None


def _upsampler_layer(layers, up_block: int) -> str | None:
    """The loaded UNet's name for up block `up_block`'s upsampler conv: the Upsample is the block's last part."""
    block = 2 + 3 * up_block
    return next((name for name in (f"diffusion_model_output_blocks_{block}_{part}_conv" for part in (2, 1))
                 if name in layers), None)


def _with_upsampler_names(convert):
    def convert_diffusers_name_to_compvis(key, is_sd2):
        name = convert(key, is_sd2)
        found = _UPSAMPLER_KEY.match(key)
        layers = getattr(shared.sd_model, "network_layer_mapping", None)
        if found is None or layers is None or name in layers:
            return name  # a name the host maps is never changed
        return _upsampler_layer(layers, int(found.group(1))) or name
    return convert_diffusers_name_to_compvis


def map_lora_upsamplers() -> bool:
    """Make the host's LoRA loader find every up-block upsampler of SDXL-family UNets (undo: `unmap_...`)."""
    networks = lora_loader()
    if networks is None:
        return False
    unmap_lora_upsamplers()
    patches.patch(__name__, networks, "convert_diffusers_name_to_compvis",
                  _with_upsampler_names(networks.convert_diffusers_name_to_compvis))
    return True


def unmap_lora_upsamplers() -> None:
    networks = lora_loader()
    if networks is not None and patches.original(__name__, networks, "convert_diffusers_name_to_compvis"):
        patches.undo(__name__, networks, "convert_diffusers_name_to_compvis")


def lora_file_sha256(name: str) -> str | None:
    """The sha256 of the whole file the prompt's `<lora:NAME>` loads, or None where the host does not know the
    name (or runs with --no-hashing).

    Not the host's `Lora hashes` value: for .safetensors that is the kohya "addnet" hash of the tensor data only,
    which cannot be compared with the file hashes the repositories publish. Hashed once through the host's own hash
    cache (cache.json, title "lcm-lora-file/NAME", re-hashed when the file changes). Duck-typed on the built-in
    Lora extension's `available_network_aliases` (A1111 1.5+, the Forges)."""
    networks = sys.modules.get("networks")
    aliases = getattr(networks, "available_network_aliases", None)
    network = aliases.get(name) if isinstance(aliases, dict) else None
    filename = getattr(network, "filename", None)
    if not filename:
        return None
    try:
        return hashes.sha256(filename, f"lcm-lora-file/{getattr(network, 'name', name)}", use_addnet_hash=False)
    except OSError:
        return None


def applied_lora_modules(stem: str):
    """(modules the host applies, the network's file) for the loaded LoRA named `stem`; None where unknown."""
    networks = lora_loader()
    net = next((net for net in getattr(networks, "loaded_networks", ()) if getattr(net, "name", None) == stem), None)
    if net is None or not hasattr(net, "modules"):
        return None
    return len(net.modules), net.network_on_disk.filename
