"""img2img reproducible from its inputs: the init image's VAE encoding is drawn from the seed, not from wherever
the last generation left torch's RNG.

The host encodes the init image in `p.init` (after the scripts' process hook, before the first batch) with the
VAE's posterior *sample*: ldm's and sgm's `DiagonalGaussianDistribution.sample`, and Forge's, draw
`torch.randn(shape)` on the CPU from torch's global generator. So the same img2img (image, prompt, seed, strength)
gave another image after other generations (up to 82/255 apart, measured), and undoing a Live edit did not bring
the earlier image back. diffusers draws that sample from the generator it is given, seeded with the seed
(`retrieve_latents(vae.encode(image), generator)`); for an LCM-LoRA img2img `p.init` does the same here: it runs
with the CPU generator seeded from the first image's seed, and the generator's state is put back afterwards, so
the host's RNG is what it was for everything else. The inpainting model's conditioning image, encoded in the same
`p.init`, is covered too. Only the CPU generator is touched: the encodings draw there on every host, and seeding
with `torch.manual_seed` would also reseed (and leave changed) the GPU's.
"""
from __future__ import annotations

import torch


def encode_init_image_from_seed(p) -> None:
    """Script hook part (process, just before the host's `p.init`): for an img2img, `p.init` runs once with the CPU
    generator seeded from the seed; the instance's wrapper removes itself on that call."""
    if not getattr(p, "init_images", None) or "init" in vars(p):
        return
    seed = _first_seed(p)
    host_init = p.init

    def init(*args, **kwargs):
        del p.init  # the host's method again, for anything that calls it later
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            return host_init(*args, **kwargs)

    p.init = init


def _first_seed(p) -> int:
    seeds = getattr(p, "all_seeds", None)
    seed = seeds[0] if seeds else getattr(p, "seed", 0)
    return int(seed) % 2**64  # torch takes a 64-bit seed; the host's are 32-bit, -1 is resolved before process
