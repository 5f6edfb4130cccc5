"""The WebUI glue of sd-webui-lcm-lora: imports the host (`modules`, gradio, fastapi) at module top, so only the
entry script (scripts/lcm_lora.py) imports it, inside a running WebUI. The logic it wires lives in lib_lcm.

Modules: `compat/` (host differences and tricks, by topic), `state` (the per-generation state on `p` and the deferred
error), `checkpoint` (the loaded model's family and LCM-LoRA), `settings`, `samplers`, `processing`, `status`
and `panel` (the accordion), `api`, `xyz`.
"""
