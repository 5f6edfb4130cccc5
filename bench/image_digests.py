"""sha256 of the PNGs the real WebUI makes with LCM-LoRA on the tiny SD 1.5 model, for fixed seeds: txt2img (LCM at
CFG 1 and 1.5, TCD), hires fix, img2img, the `<lora:lcm>` alias with the panel off, and a style LoRA with and
without LCM-LoRA.

Run it on two checkouts (e.g. before and after a refactoring, each from its own folder) against the same prepared
WebUI and compare the JSON lines: equal digests = byte-identical images, infotext included (the API's PNGs carry
it). Needs SD_WEBUI_DIR / SD_WEBUI_PYTHON like tests/e2e.

    python bench/image_digests.py --work /tmp/digests [--json-out FILE]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness  # noqa: E402

BASE = {"prompt": "a photo of a cat", "negative_prompt": "blurry", "width": 64, "height": 64, "seed": 1234,
        "override_settings": {"live_previews_enable": False}}


def lcm(**settings):
    return {"alwayson_scripts": {"LCM-LoRA": {"args": [{"enabled": True, **settings}]}}}


CASES = {
    "txt2img_lcm_cfg1": lcm(),
    "txt2img_lcm_cfg1.5": lcm(cfg_scale=1.5, steps=6),
    "txt2img_tcd": lcm(mode="TCD", gamma=0.5),
    "txt2img_hires": {**lcm(), "enable_hr": True, "hr_scale": 2, "hr_upscaler": "Latent", "denoising_strength": 0.6,
                      "hr_additional_modules": ["Use same choices"]},
    "txt2img_alias_euler": {"prompt": "a photo of a cat <lora:lcm:0.8>", "sampler_name": "Euler", "steps": 4},
    "txt2img_lcm_with_style_lora": {**lcm(), "prompt": "a photo of a cat <lora:tiny-style-sd15:0.8>"},
    "txt2img_style_lora_euler": {"prompt": "a photo of a cat <lora:tiny-style-sd15:0.8>", "sampler_name": "Euler",
                                 "steps": 4},
}


def png_digest(image_b64: str) -> str:
    return hashlib.sha256(base64.b64decode(image_b64.split(",", 1)[-1])).hexdigest()


def run(bench) -> dict:
    digests = {}
    init = None
    for name, config in CASES.items():
        answer = bench.client.post("/sdapi/v1/txt2img", {**BASE, **config})
        digests[name] = png_digest(answer["images"][0])
        if name == "txt2img_lcm_cfg1":
            init = answer["images"][0]
    for strength in (0.75, 0.3):
        answer = bench.client.post("/sdapi/v1/img2img", {**BASE, **lcm(), "init_images": [init],
                                                          "denoising_strength": strength})
        digests[f"img2img_lcm_{strength}"] = png_digest(answer["images"][0])
    return digests


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="lcm-digests-"))
    work.mkdir(parents=True, exist_ok=True)
    bench = harness.start(work, "tiny")
    try:
        digests = run(bench)
    finally:
        bench.server.stop()
    harness.emit({"bench": "image_digests", "machine": harness.machine(), "digests": digests}, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
