"""An LCM-LoRA img2img's init-image encoding is drawn from the seed (lib_lcm_webui/init_image_seed.py), and torch's
RNG is left as it was for everything else. The real host: tests/e2e/test_img2img_reproducible.py."""
from __future__ import annotations

import torch

from tests.fake_webui import FakeP, fake_webui


class Img2ImgP(FakeP):
    """The host's img2img `p`: `init` encodes the init image with the VAE's posterior sample (a CPU randn)."""

    def __init__(self, seed=1234, **kwargs):
        super().__init__(init_images=["image"], seed=seed, all_seeds=[seed, seed + 1], sampler_name="Euler a",
                         **kwargs)
        self.init_calls = 0

    def init(self, all_prompts, all_seeds, all_subseeds):
        self.init_calls += 1
        self.init_latent = 0.5 + 0.1 * torch.randn(1, 4, 8, 8)


def encode_after(earlier_draws: int, p=None, enabled=True):
    """Run the script hooks and the host's p.init after `earlier_draws` draws from the global RNG (what earlier
    generations left); returns p and whether the global RNG is where the host left it."""
    with fake_webui() as host:
        from lib_lcm_webui import processing

        p = p or Img2ImgP()
        torch.manual_seed(99)
        torch.randn(earlier_draws)
        processing.before_process(p, [{"enabled": enabled}])
        state_before = torch.random.get_rng_state()
        processing.process(p, host.sd_model)
        p.init(["a cat"], p.all_seeds, p.all_seeds)
        untouched = torch.equal(torch.random.get_rng_state(), state_before)
    return p, untouched


def test_the_same_img2img_encodes_the_same_whatever_ran_before():
    first, untouched = encode_after(3)
    second, _ = encode_after(1000)
    assert torch.equal(first.init_latent, second.init_latent)
    assert untouched, "the host's RNG is as it was before p.init"
    assert first.init_calls == 1 and "init" not in vars(first), "the wrapper runs the host's init once, then goes"


def test_the_encoding_is_the_seeds_first_draw_as_in_diffusers():
    p, _ = encode_after(7)
    generator = torch.Generator().manual_seed(1234)
    assert torch.equal(p.init_latent, 0.5 + 0.1 * torch.randn(1, 4, 8, 8, generator=generator))


def test_another_seed_another_encoding():
    one, _ = encode_after(3, Img2ImgP(seed=1))
    two, _ = encode_after(3, Img2ImgP(seed=2))
    assert not torch.equal(one.init_latent, two.init_latent)


def test_without_lcm_lora_or_without_an_init_image_the_host_is_left_alone():
    off_one, _ = encode_after(3, enabled=False)
    off_two, _ = encode_after(1000, enabled=False)
    assert not torch.equal(off_one.init_latent, off_two.init_latent), "the host's own behaviour, unchanged"
    assert "init" not in vars(off_one)
    with fake_webui() as host:
        from lib_lcm_webui import processing

        txt2img = FakeP(seed=1, all_seeds=[1], sampler_name="Euler a")
        processing.before_process(txt2img, [{"enabled": True}])
        processing.process(txt2img, host.sd_model)
    assert "init" not in vars(txt2img)
