"""Test-only WebUI extension: counts UNet evaluations and records their timesteps.

Installed by the e2e harness next to sd-webui-lcm-lora; never shipped. GET /lcm-test/v1/unet returns
{"calls": forward calls, "rows": batch rows evaluated, "timesteps": first timestep of each call};
POST /lcm-test/v1/unet/reset clears it; GET /lcm-test/v1/xyz-axes lists the X/Y/Z plot's txt2img axes in the
order its "X type" index refers to; GET /lcm-test/v1/xyz-run-params the names of its run() arguments, in
order; GET /lcm-test/v1/opts returns the registered LCM-LoRA settings
(`shared.opts.data`, unfiltered: Forge's GET /sdapi/v1/options lists only the settings known when its API models
were first imported, before any extension's `on_ui_settings`); GET /lcm-test/v1/panel-status returns the LCM-LoRA
panel's status line for the loaded checkpoint, as the panel's Refresh computes it; GET /lcm-test/v1/lora?name=STEM
returns the host's own state of that loaded LoRA (A1111's built-in Lora extension): the modules it applies, and the
weight change it made to the UNet layer named by `layer` (current weight minus the host's backup);
GET /lcm-test/v1/unet-patches returns, on the Forges, the UNet weights their patcher patches, per LoRA file stem
(Forge) or for all files together ("*": reForge, Forge Classic).
GET /lcm-test/v1/timings returns, per generation since the last reset (POST /lcm-test/v1/timings/reset), the
seconds between the script hooks that bracket each stage (bench/live_latency.py splits an image's time with them):
"prompts" (before_process_batch -> process_batch: text encoding), "sampling" (process_batch -> post_sample: the
UNet steps), "decode" (post_sample -> postprocess_batch: VAE decode), "finish" (postprocess_batch -> postprocess:
post-processing and saving), "total" (before_process -> postprocess), and "wall": the wall-clock time
(time.time()) of before_process and postprocess, to place them among a page's timestamps on the same machine.
POST /lcm-test/v1/unet/slow {"ms": N} makes every UNet call take N ms longer (0: as it is), so that a test can
make an image slow enough to be interrupted in the middle (Live's cut of a stale image).
POST /lcm-test/v1/modules {"names": [class names]} starts counting the forward calls (and output rows) of every
module of those classes, e.g. a neighbour extension's ControlNet or motion modules, and GET returns the counts.
"""
import time

from modules import script_callbacks, scripts, shared

COUNTS = {"calls": 0, "rows": 0, "timesteps": []}
SLOW = {"ms": 0}
TIMINGS = []
_MARKS = {}
_STAGES = (("prompts", "before_process_batch", "process_batch"), ("sampling", "process_batch", "post_sample"),
           ("decode", "post_sample", "postprocess_batch"), ("finish", "postprocess_batch", "postprocess"),
           ("total", "before_process", "postprocess"))
MODULE_COUNTS: dict = {}  # class name -> {"calls", "rows"}
_GLOBAL_HOOK = []


def _count(_module, args, kwargs):
    x = args[0] if args else kwargs.get("x")
    timesteps = args[1] if len(args) > 1 else kwargs.get("timesteps")
    COUNTS["calls"] += 1
    COUNTS["rows"] += int(x.shape[0])
    if timesteps is not None:
        COUNTS["timesteps"].append(round(float(timesteps.flatten()[0]), 3))
    if SLOW["ms"]:
        time.sleep(SLOW["ms"] / 1000)


def _count_module(module, _args, output):
    counts = MODULE_COUNTS.get(type(module).__name__)
    if counts is not None:
        first = _first_tensor(output)
        counts["calls"] += 1
        counts["rows"] += int(first.shape[0]) if first is not None else 0


def _first_tensor(output):
    """The first tensor in a module's output: itself, or inside a list/tuple or a dict (reForge's ControlNet returns
    {"input": [...], "middle": [...], "output": [...]})."""
    if hasattr(output, "shape"):
        return output
    items = output.values() if isinstance(output, dict) else output if isinstance(output, (list, tuple)) else ()
    return next((found for found in map(_first_tensor, items) if found is not None), None)


def _install_hook():
    forge_objects = getattr(shared.sd_model, "forge_objects", None)
    # Forge's engine has no `.model`: the UNet is in its patcher (one call for cond+uncond: count rows).
    model = forge_objects.unet.model if forge_objects is not None else shared.sd_model.model
    unet = model.diffusion_model
    if not getattr(unet, "_lcm_test_probe", False):
        unet.register_forward_pre_hook(_count, with_kwargs=True)
        unet._lcm_test_probe = True


class LcmTestProbe(scripts.Script):
    def title(self):
        return "LCM test probe"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def process(self, p, *args):
        _install_hook()

    # Marks for /lcm-test/v1/timings (the first of each per generation: one batch of one image in the bench).
    def before_process(self, p, *args):
        _MARKS.clear()
        _mark("before_process")

    def before_process_batch(self, p, *args, **kwargs):
        _mark("before_process_batch")

    def process_batch(self, p, *args, **kwargs):
        _mark("process_batch")

    def post_sample(self, p, ps, *args):
        _mark("post_sample")

    def postprocess_batch(self, p, *args, **kwargs):
        _mark("postprocess_batch")

    def postprocess(self, p, processed, *args):
        _mark("postprocess")
        timing = {name: round(_MARKS[end][0] - _MARKS[begin][0], 4) for name, begin, end in _STAGES
                  if begin in _MARKS and end in _MARKS}
        timing["wall"] = {name: _MARKS[name][1] for name in ("before_process", "postprocess")}
        TIMINGS.append(timing)


def _mark(name):
    _MARKS.setdefault(name, (time.perf_counter(), time.time()))


def _routes(_demo, app):
    def read():
        return COUNTS

    def reset():
        COUNTS.update(calls=0, rows=0, timesteps=[])
        return COUNTS

    def slow(body: dict):
        SLOW["ms"] = max(0, int(body.get("ms", 0)))
        return SLOW

    def xyz_axes(is_img2img: bool = False):
        for data in scripts.scripts_data:
            if data.path.endswith("xyz_grid.py"):
                xyz = data.module
                return [a.label for a in xyz.axis_options
                        if type(a) is xyz.AxisOption or a.is_img2img == is_img2img]
        return []

    def xyz_run_params():
        # The X/Y/Z script's run() parameters after `p`, in order: script_args are positional and the hosts
        # differ (reForge adds draw_individual_labels, skip_grid, items_per_grid; 1.6 has no vary_seeds_*).
        import inspect

        for data in scripts.scripts_data:
            if data.path.endswith("xyz_grid.py"):
                return list(inspect.signature(data.script_class.run).parameters)[2:]
        return []

    def opts():
        return {key: value for key, value in shared.opts.data.items() if key.startswith("lcm_lora_")}

    def panel_status():
        # The extension's own glue, imported by its entry script (which put the extension on sys.path).
        from lib_lcm_webui import status

        return {"html": status.refresh_status()[0]}

    def lora(name: str, layer: str = "diffusion_model_output_blocks_2_2_conv"):
        import sys

        networks = sys.modules["networks"]  # the built-in Lora extension's module
        net = next((net for net in networks.loaded_networks if net.name == name), None)
        if net is None:
            return {"loaded": False}
        module = shared.sd_model.network_layer_mapping.get(layer)
        backup = getattr(module, "network_weights_backup", None)
        delta = None if backup is None else (module.weight.detach().cpu().double() - backup.double()).tolist()
        return {"loaded": True, "applied": sorted(net.modules), "file": net.network_on_disk.filename,
                "layer_delta": delta}

    def unet_patches():
        from pathlib import Path

        # The Forges apply a LoRA as patches on the UNet's patcher: Forge 2 per file (`lora_patches`, keyed by
        # (filename, strengths, mode)), the ldm_patched Forges all files together (`patches`, named "*").
        forge_objects = getattr(shared.sd_model, "forge_objects", None)
        unet = getattr(forge_objects, "unet", None)
        if hasattr(unet, "lora_patches"):
            return {Path(identifier[0]).stem: sorted(patches) for identifier, patches in unet.lora_patches.items()}
        if hasattr(unet, "patches"):
            return {"*": sorted(key for key, patches in unet.patches.items() if patches)}
        return {}

    def timings():
        return TIMINGS

    def reset_timings():
        TIMINGS.clear()
        return {}

    app.add_api_route("/lcm-test/v1/timings", timings, methods=["GET"])
    app.add_api_route("/lcm-test/v1/timings/reset", reset_timings, methods=["POST"])
    def modules_read():
        return MODULE_COUNTS

    def modules_count(body: dict):
        import torch

        # A global hook: the neighbours build their models at generation time, out of this probe's reach. Only
        # while a test asks for it (one call per module forward).
        if not _GLOBAL_HOOK:
            _GLOBAL_HOOK.append(torch.nn.modules.module.register_module_forward_hook(_count_module))
        MODULE_COUNTS.clear()
        MODULE_COUNTS.update({name: {"calls": 0, "rows": 0} for name in body.get("names", [])})
        return MODULE_COUNTS

    app.add_api_route("/lcm-test/v1/modules", modules_read, methods=["GET"])
    app.add_api_route("/lcm-test/v1/modules", modules_count, methods=["POST"])
    app.add_api_route("/lcm-test/v1/lora", lora, methods=["GET"])
    app.add_api_route("/lcm-test/v1/unet-patches", unet_patches, methods=["GET"])
    app.add_api_route("/lcm-test/v1/panel-status", panel_status, methods=["GET"])
    app.add_api_route("/lcm-test/v1/unet", read, methods=["GET"])
    app.add_api_route("/lcm-test/v1/opts", opts, methods=["GET"])
    app.add_api_route("/lcm-test/v1/xyz-axes", xyz_axes, methods=["GET"])
    app.add_api_route("/lcm-test/v1/xyz-run-params", xyz_run_params, methods=["GET"])
    app.add_api_route("/lcm-test/v1/unet/reset", reset, methods=["POST"])
    app.add_api_route("/lcm-test/v1/unet/slow", slow, methods=["POST"])


script_callbacks.on_app_started(_routes)
