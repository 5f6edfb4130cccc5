"""LCM-LoRA for the AUTOMATIC1111 WebUI: thin entry; the logic lives in lib_lcm."""
import os
import sys

import gradio as gr  # noqa: F401  (the WebUI provides it; imported so a broken install fails here, loudly)
from modules import script_callbacks, scripts, shared

_EXTENSION_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _EXTENSION_DIR not in sys.path:
    sys.path.insert(0, _EXTENSION_DIR)

from lib_lcm import webui_api, webui_processing, webui_sampler, webui_ui, webui_xyz  # noqa: E402
from lib_lcm.params import SCRIPT_TITLE  # noqa: E402


class LcmLoraScript(scripts.Script):
    def title(self):
        return SCRIPT_TITLE

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return webui_ui.build_panel(self, is_img2img)

    def before_process(self, p, *args):
        webui_processing.before_process(p, args)

    def process(self, p, *args):
        webui_processing.process(p, shared.sd_model)


def _on_before_ui():
    webui_sampler.register_samplers()
    webui_xyz.register_axes()
    # Before 1.9 the host registers settings after building the script UIs, which fixes the API's options
    # model first: GET /sdapi/v1/options would leave ours out. Registering twice is harmless.
    webui_ui.register_settings()


def _on_app_started(_demo, app):
    webui_api.register_routes(app)


# before_ui runs in UI and API-only starts alike (1.6-1.10), before any sampler list is read.
script_callbacks.on_before_ui(_on_before_ui)
script_callbacks.on_app_started(_on_app_started)
script_callbacks.on_ui_settings(webui_ui.register_settings)
script_callbacks.on_infotext_pasted(webui_processing.on_infotext_pasted)
script_callbacks.on_script_unloaded(webui_sampler.unregister_samplers)
