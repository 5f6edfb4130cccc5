"""LCM-LoRA for the AUTOMATIC1111 WebUI: thin entry. Pure logic in lib_lcm, the WebUI glue in lib_lcm_webui."""
import os
import sys

from modules import script_callbacks, scripts, shared

_EXTENSION_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _EXTENSION_DIR not in sys.path:
    sys.path.insert(0, _EXTENSION_DIR)

from lib_lcm.params import SCRIPT_TITLE  # noqa: E402
from lib_lcm_webui import api, panel, processing, samplers, settings, xyz  # noqa: E402
from lib_lcm_webui.compat import lora_loader  # noqa: E402


class LcmLoraScript(scripts.Script):
    def title(self):
        return SCRIPT_TITLE

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return panel.build_panel(self, is_img2img)

    def before_process(self, p, *args):
        processing.before_process(p, args)

    def process(self, p, *args):
        processing.process(p, shared.sd_model)

    def process_batch(self, p, *args, **kwargs):
        processing.check_lora_modules(p)

    def postprocess(self, p, processed, *args):
        processing.postprocess(p)


def _on_before_ui():
    samplers.register_samplers()
    lora_loader.map_lora_upsamplers()
    xyz.register_axes()
    # Before 1.9 the host registers settings after building the script UIs, which fixes the API's options
    # model first: GET /sdapi/v1/options would leave ours out. Registering twice is harmless.
    settings.register_settings()


def _on_app_started(_demo, app):
    api.register_routes(app)


# before_ui runs in UI and API-only starts alike (1.6-1.10), before any sampler list is read.
script_callbacks.on_before_ui(_on_before_ui)
script_callbacks.on_app_started(_on_app_started)
script_callbacks.on_ui_settings(settings.register_settings)
script_callbacks.on_infotext_pasted(processing.on_infotext_pasted)
script_callbacks.on_script_unloaded(samplers.unregister_samplers)
script_callbacks.on_script_unloaded(lora_loader.unmap_lora_upsamplers)
