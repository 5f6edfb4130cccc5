"""sd-webui-lcm-lora core: pure Python + torch, never imports the WebUI (`modules`) at import time."""

__version__ = "0.1.0"
