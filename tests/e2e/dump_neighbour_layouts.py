"""Print the key -> shape lists of the neighbour extensions' own model classes, as JSON, for
test_neighbours_models.py to compare with tests/fixtures/released_layouts/.

    cd $SD_WEBUI_DIR && $SD_WEBUI_PYTHON dump_neighbour_layouts.py CONTROLNET_DIR ANIMATEDIFF_DIR

Run with the WebUI's python in its folder: both classes import the host's ldm/sgm modules. Built on the meta
device: shapes only, no memory."""
import copy
import json
import os
import sys


def shapes_of(state_dict, prefix="", drop_pe=False):
    return sorted(f"{prefix}{k} {','.join(map(str, v.shape))}" for k, v in state_dict.items()
                  if not (drop_pe and k.endswith(".pe")))


def main(controlnet_dir, animatediff_dir):
    webui = os.getcwd()
    sys.path[:0] = [webui, os.path.join(webui, "repositories", "stable-diffusion-stability-ai"),
                    os.path.join(webui, "repositories", "generative-models")]
    sys.argv = sys.argv[:1]  # the host's option parser reads them
    import torch
    from modules import shared

    import scripts as host_scripts  # the extension's modules import as scripts.<name>

    host_scripts.__path__.append(os.path.join(controlnet_dir, "scripts"))
    sys.path.insert(0, controlnet_dir)
    from scripts.controlnet_model_guess import controlnet_default_config

    from scripts import cldm

    config = {**copy.deepcopy(controlnet_default_config), "hint_channels": 3, "use_fp16": False}
    if getattr(shared, "opts", None) is None:
        # AnimateDiff before 2.0 (e.g. v1.13.1) imports the host's sd_hijack, whose imports read the host's
        # options: set them up as the WebUI does at start (A1111 1.6+; here they stay None until then).
        from modules import shared_init

        shared_init.initialize()
        from modules import processing  # noqa: F401  (first, as the WebUI does: sd_hijack alone imports circularly)
    sys.path.insert(0, animatediff_dir)
    import motion_module

    with torch.device("meta"):
        layouts = {"controlnet_sd15": shapes_of(cldm.ControlNet(**config).state_dict(), "control_model.")}
        for name, kind in (("mm_sd15_v3", "AnimateDiffV3"), ("animatelcm_sd15", "AnimateLCM")):
            if not hasattr(motion_module.MotionModuleType, kind):  # AnimateLCM: since 2024-07 (v2.0.1-a)
                continue
            wrapper = motion_module.MotionWrapper("x", "x", getattr(motion_module.MotionModuleType, kind))
            # the released AnimateLCM file stores no positional encodings (the extension loads it non-strict)
            layouts[name] = shapes_of(wrapper.state_dict(), drop_pe=kind == "AnimateLCM")
    print("LAYOUTS " + json.dumps(layouts))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
