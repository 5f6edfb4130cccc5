"""The host's TAESD decoder (Live's fast decode): its "VAE type for decode" option, files and loader (1.6+)."""
from __future__ import annotations

import os

from modules import paths_internal, shared

try:  # 1.6+: TAESD behind the "VAE type for decode" option
    from modules import sd_vae_taesd
except ImportError:
    sd_vae_taesd = None


DECODE_OPTION = "sd_vae_decode_method"
TAESD_DECODE = "TAESD"
_TAESD_FILES = {"sd": "taesd_decoder.pth", "sdxl": "taesdxl_decoder.pth", "sd3": "taesd3_decoder.pth"}


def has_taesd_decode() -> bool:
    """Whether the host decodes with TAESD on request: its "VAE type for decode" option and loader (1.6+)."""
    labels = getattr(shared.opts, "data_labels", {})
    return sd_vae_taesd is not None and hasattr(sd_vae_taesd, "decoder_model") and DECODE_OPTION in labels


def decode_with_full_vae() -> None:
    """During a generation that overrides the decode option (the host puts it back afterwards); no save."""
    shared.opts.data[DECODE_OPTION] = "Full"


def taesd_model_key(sd_model) -> str | None:
    """Which TAESD decoder the host loads for `sd_model` ("sd", "sdxl", "sd3"); None on a host without TAESD."""
    if not has_taesd_decode():
        return None
    return "sd3" if getattr(sd_model, "is_sd3", False) else "sdxl" if getattr(sd_model, "is_sdxl", False) else "sd"


def taesd_file_hint(key: str) -> str:
    return f"models/VAE-taesd/{_TAESD_FILES.get(key, _TAESD_FILES['sd'])}"


def taesd_file_state(key: str):
    """(mtime_ns, size) of the host's TAESD decoder file for `key`, None when it is missing."""
    path = os.path.join(paths_internal.models_path, "VAE-taesd", _TAESD_FILES.get(key, _TAESD_FILES["sd"]))
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def load_taesd_decoder():
    """The host's TAESD loader for the loaded model (downloads on first use, raises, keeps it for decoding)."""
    return sd_vae_taesd.decoder_model()
