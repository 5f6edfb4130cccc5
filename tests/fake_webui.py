"""A thin fake of the WebUI (`modules.*`, `k_diffusion.*`, gradio 3.41) for the glue's unit tests.

The glue (`lib_lcm_webui`) imports the host at module top, like any WebUI extension: `fake_webui()` installs the
fake host into sys.modules first and forgets every glue module before and after, so each test imports the glue
against the host it set up (`from lib_lcm_webui import samplers` inside the `with`/fixture), as
sd-dynamic-prompts' `monkeypatch_webui` fixture does.

It mirrors only the host behaviour the glue relies on, written from A1111 1.6-1.10:
- `CFGDenoiser.forward` builds cond+uncond rows, skips the uncond rows only when `self.step % 2` and
  0 < sigma < s_min_uncond (NGMS, writing "NGMS" to the infotext), fills the skipped rows with the cond
  output and combines with scale 1;
- `CompVisDenoiser` is k-diffusion's discrete eps denoiser (sigma <-> t, c_in, c_out);
- `KDiffusionSampler` keeps the attribute/method names the glue calls;
- gradio: every block records its kwargs and event listeners (`Block`), `gr.update`, `gradio.context.Context`.
The real host is exercised by tests/e2e.
"""
from __future__ import annotations

import hashlib
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import torch

from lib_lcm.schedules import scaled_linear_alphas_cumprod


class MultiCond:
    """What reconstruct_multicond_batch returns: per image a list of (row index, AND-weight)."""

    def __init__(self, conds_list, tensor):
        self.conds_list = conds_list
        self.tensor = tensor


def reconstruct_multicond_batch(cond, step):
    return cond.conds_list, cond.tensor


class CompVisDenoiser(torch.nn.Module):
    def __init__(self, model, quantize=False):
        super().__init__()
        self.inner_model = model
        self.quantize = quantize
        self.register_buffer("sigmas", ((1 - model.alphas_cumprod) / model.alphas_cumprod) ** 0.5)
        self.register_buffer("log_sigmas", self.sigmas.log())

    def sigma_to_t(self, sigma, quantize=None):
        quantize = self.quantize if quantize is None else quantize
        dists = sigma.log() - self.log_sigmas[:, None]
        if quantize:
            return dists.abs().argmin(dim=0).view(sigma.shape)
        raise NotImplementedError("the glue always quantizes")

    def forward(self, input, sigma, **kwargs):
        c_out = -sigma[:, None, None, None]
        c_in = 1 / (sigma[:, None, None, None] ** 2 + 1) ** 0.5
        eps = self.inner_model.apply_model(input * c_in, self.sigma_to_t(sigma), **kwargs)
        return input + eps * c_out


class CFGDenoiser(torch.nn.Module):
    def __init__(self, sampler):
        super().__init__()
        self.sampler = sampler
        self.model_wrap = None
        self.step = 0
        self.p = None
        self.mask = None
        self.padded_cond_uncond = False
        self.padded_cond_uncond_v0 = False

    def combine_denoised(self, x_out, conds_list, uncond, cond_scale):
        denoised_uncond = x_out[-uncond.shape[0]:]
        denoised = torch.clone(denoised_uncond)
        for i, conds in enumerate(conds_list):
            for cond_index, weight in conds:
                denoised[i] += (x_out[cond_index] - denoised_uncond[i]) * (weight * cond_scale)
        return denoised

    def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        conds_list, tensor = reconstruct_multicond_batch(cond, self.step)
        batch_size = len(conds_list)
        repeats = [len(conds) for conds in conds_list]
        x_in = torch.cat([torch.stack([x[i] for _ in range(n)]) for i, n in enumerate(repeats)] + [x])
        sigma_in = torch.cat([torch.stack([sigma[i] for _ in range(n)]) for i, n in enumerate(repeats)] + [sigma])

        skip_uncond = False
        if self.step % 2 and s_min_uncond > 0 and sigma[0] < s_min_uncond:
            skip_uncond = True
            self.p.extra_generation_params["NGMS"] = s_min_uncond
        if skip_uncond:
            x_in, sigma_in, cond_in = x_in[:-batch_size], sigma_in[:-batch_size], tensor
        else:
            cond_in = torch.cat([tensor, uncond])
        x_out = self.inner_model(x_in, sigma_in, cond={"c_crossattn": [cond_in]})

        denoised_image_indexes = [conds[0][0] for conds in conds_list]
        if skip_uncond:
            x_out = torch.cat([x_out, torch.cat([x_out[i:i + 1] for i in denoised_image_indexes])])
            denoised = self.combine_denoised(x_out, conds_list, uncond, 1.0)
        else:
            denoised = self.combine_denoised(x_out, conds_list, uncond, cond_scale)
        self.step += 1
        return denoised


class SamplerData(tuple):
    def __new__(cls, name, constructor, aliases, options):
        return super().__new__(cls, (name, constructor, aliases, options))

    name = property(lambda self: self[0])
    constructor = property(lambda self: self[1])
    aliases = property(lambda self: self[2])
    options = property(lambda self: self[3])

    def total_steps(self, steps):
        return steps


class KDiffusionSampler:
    def __init__(self, funcname, sd_model, options=None):
        self.funcname = funcname
        self.func = funcname
        self.config = SamplerData("fake", None, [], {})
        self.model_wrap_cfg = None
        self.model_wrap = None
        self.s_min_uncond = 0.0
        self.last_latent = None
        self.callback_steps = []

    def initialize(self, p):
        self.p = p
        self.model_wrap_cfg.p = p
        self.model_wrap_cfg.step = 0
        self.model_wrap_cfg.mask = None
        return {}

    def callback_state(self, d):
        self.callback_steps.append(d["i"])

    def launch_sampling(self, steps, func):
        self.model_wrap_cfg.steps = steps
        return func()

    def add_infotext(self, p):
        pass


class ToyUNetModel:
    """sd_model stand-in: SD's alphas_cumprod and a deterministic eps(x, t, cond); records every call."""

    def __init__(self):
        self.alphas_cumprod = scaled_linear_alphas_cumprod().float()
        self.calls = []  # (rows, first timestep)

    def apply_model(self, x, t, cond):
        self.calls.append((x.shape[0], int(t.flatten()[0])))
        context = cond["c_crossattn"][0]
        return torch.tanh(0.3 * x + t[:, None, None, None] / 1000.0) + context[:, 0, 0][:, None, None, None] * 0.1


class Block:
    """A gradio block: remembers its kwargs and the event listeners attached to it."""

    def __init__(self, value=None, **kwargs):
        self.value = value if value is not None else kwargs.get("value")
        self.kwargs = kwargs
        self.elem_id = kwargs.get("elem_id")
        self.events = []
        self.ui.created.append(self)
        if self.ui.root is not None:
            self.ui.root.blocks[id(self)] = self

    def _listen(self, name, **kwargs):
        self.events.append((name, kwargs))
        return types.SimpleNamespace(then=lambda **more: self.events.append(("then", more)))

    def change(self, **kwargs):
        return self._listen("change", **kwargs)

    def click(self, **kwargs):
        return self._listen("click", **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def fake_gradio():
    ui = types.SimpleNamespace(created=[], root=types.SimpleNamespace(blocks={}))
    gr = types.ModuleType("gradio")
    for name in ("Slider", "Radio", "Checkbox", "Number", "Textbox", "HTML", "Button", "Row", "Accordion", "Column"):
        setattr(gr, name, type(name, (Block,), {"ui": ui}))
    gr.update = lambda **kwargs: {"__type__": "update", **kwargs}
    context = types.ModuleType("gradio.context")
    context.Context = types.SimpleNamespace(root_block=ui.root)
    gr.context = context
    return gr, context, ui


GLUE = "lib_lcm_webui"


def forget_glue():
    """Drop the glue's modules, so the next import binds them to the host now in sys.modules."""
    for name in [name for name in sys.modules if name == GLUE or name.startswith(GLUE + ".")]:
        del sys.modules[name]


@contextmanager
def installed_modules(modules: dict):
    """`modules` in sys.modules (glue forgotten) for the duration, then everything as it was."""
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    forget_glue()
    try:
        yield
    finally:
        forget_glue()
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class FakeP:
    def __init__(self, **kwargs):
        self.extra_generation_params = {}
        self.cfg_scale = 1.0
        self.steps = 4
        self.denoising_strength = 1.0
        self.__dict__.update(kwargs)


def _shared_module(sd_model, opts):
    shared = types.ModuleType("modules.shared")
    shared.sd_model = sd_model
    shared.opts = types.SimpleNamespace(sgm_noise_multiplier=False, img2img_extra_noise=0.0, hide_samplers=[],
                                        **(opts or {}))
    shared.opts.added = {}
    shared.opts.add_option = lambda key, info: shared.opts.added.__setitem__(key, info)
    shared.OptionInfo = lambda default, label, component=None, component_args=None, **kw: types.SimpleNamespace(
        default=default, label=label, component=component, component_args=component_args, **kw)
    shared.state = types.SimpleNamespace(textinfo="", interrupted=False, job="")
    shared.cmd_opts = types.SimpleNamespace(lora_dir="")
    return shared


def _sampler_modules():
    prompt_parser = types.ModuleType("modules.prompt_parser")
    prompt_parser.reconstruct_multicond_batch = reconstruct_multicond_batch
    cfg = types.ModuleType("modules.sd_samplers_cfg_denoiser")
    cfg.CFGDenoiser = CFGDenoiser
    kdiff = types.ModuleType("modules.sd_samplers_kdiffusion")
    kdiff.KDiffusionSampler = KDiffusionSampler
    common = types.ModuleType("modules.sd_samplers_common")
    common.SamplerData = SamplerData
    samplers = types.ModuleType("modules.sd_samplers")
    samplers.all_samplers = [SamplerData("Euler a", None, ["k_euler_a"], {}), SamplerData("LCM", None, ["k_lcm"], {})]
    samplers.all_samplers_map = {s.name: s for s in samplers.all_samplers}
    samplers.set_samplers_calls = 0

    def set_samplers():
        samplers.set_samplers_calls += 1
        samplers.samplers = list(samplers.all_samplers)

    samplers.set_samplers = set_samplers
    return {"prompt_parser": prompt_parser, "sd_samplers_cfg_denoiser": cfg, "sd_samplers_kdiffusion": kdiff,
            "sd_samplers_common": common, "sd_samplers": samplers}


def _patches_module():
    """`modules.patches` (A1111 1.6+): patch/undo/original, one patch per (caller key, object, field)."""
    patches = types.ModuleType("modules.patches")
    patches.originals = {}

    def patch(key, obj, field, replacement):
        done = patches.originals.setdefault(key, {})
        if (obj, field) in done:
            raise RuntimeError(f"patch for {field} is already applied")
        done[(obj, field)] = getattr(obj, field)
        setattr(obj, field, replacement)

    def undo(key, obj, field):
        done = patches.originals.setdefault(key, {})
        if (obj, field) not in done:
            raise RuntimeError(f"there is no patch for {field} to undo")
        setattr(obj, field, done.pop((obj, field)))

    patches.patch, patches.undo = patch, undo
    patches.original = lambda key, obj, field: patches.originals.get(key, {}).get((obj, field))
    return patches


def _k_diffusion_modules():
    k_diffusion = types.ModuleType("k_diffusion")
    k_diffusion.__path__ = []
    k_external = types.ModuleType("k_diffusion.external")
    k_external.CompVisDenoiser = CompVisDenoiser
    k_sampling = types.ModuleType("k_diffusion.sampling")
    k_sampling.default_noise_sampler = lambda x: (lambda sigma, sigma_next: torch.randn_like(x))
    k_diffusion.external, k_diffusion.sampling = k_external, k_sampling
    return {"k_diffusion": k_diffusion, "k_diffusion.external": k_external, "k_diffusion.sampling": k_sampling}


@contextmanager
def fake_webui(sd_model=None, opts=None, input_accordion=True, taesd_loader=None, models_path="/nonexistent/models"):
    """Install the fake host (and gradio) for the duration of a test, then restore everything.

    `taesd_loader`: the host's `sd_vae_taesd.decoder_model` (1.6+; None: a host without TAESD);
    `models_path`: `paths_internal.models_path`."""
    sd_model = sd_model or ToyUNetModel()
    gr, context, ui = fake_gradio()
    modules = types.ModuleType("modules")
    modules.__path__ = []
    parts = {"shared": _shared_module(sd_model, opts), "patches": _patches_module(), **_sampler_modules()}
    sd_models = parts["sd_models"] = types.ModuleType("modules.sd_models")
    sd_models.select_checkpoint = lambda: None  # no checkpoint selected (A1111 and Forge have this function)
    ui_components = parts["ui_components"] = types.ModuleType("modules.ui_components")
    if input_accordion:
        ui_components.InputAccordion = type("InputAccordion", (gr.Checkbox,), {})
    hashes = parts["hashes"] = types.ModuleType("modules.hashes")  # the host's hash cache: hashed on each call here
    hashes.sha256 = lambda filename, title, use_addnet_hash=False: hashlib.sha256(Path(filename).read_bytes()).hexdigest()
    scripts = parts["scripts"] = types.ModuleType("modules.scripts")
    scripts.scripts_data = []
    paths_internal = parts["paths_internal"] = types.ModuleType("modules.paths_internal")
    paths_internal.models_path = str(models_path)
    if taesd_loader is not None:
        parts["sd_vae_taesd"] = types.ModuleType("modules.sd_vae_taesd")
        parts["sd_vae_taesd"].decoder_model = taesd_loader
    for name, module in parts.items():
        setattr(modules, name, module)
    installed = {"modules": modules, **{f"modules.{name}": module for name, module in parts.items()},
                 **_k_diffusion_modules(), "gradio": gr, "gradio.context": context}
    with installed_modules(installed):
        yield types.SimpleNamespace(shared=parts["shared"], sd_samplers=parts["sd_samplers"], sd_model=sd_model,
                                    sd_models=sd_models, gr=gr, ui=ui)
