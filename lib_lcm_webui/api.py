"""`GET /lcm-lora/v1/status` and `POST /lcm-lora/v1/download`, registered in on_app_started."""
from fastapi import HTTPException
from modules import shared
from pydantic import BaseModel

from lib_lcm import download, registry
from lib_lcm.errors import WeightsError
from lib_lcm.lora_files import weights_status


class DownloadRequest(BaseModel):
    variant: str


def lora_dir() -> str:
    return shared.cmd_opts.lora_dir


def status():
    return {"lora_dir": lora_dir(), "variants": weights_status(lora_dir(), registry.current_registry())}


def start_download(request: DownloadRequest):
    known = list(registry.current_registry())
    if request.variant not in known:
        raise HTTPException(status_code=422, detail=f"unknown variant {request.variant!r}; known: {', '.join(known)}")
    try:
        path = download.ensure_weights(request.variant, lora_dir())
    except WeightsError as e:
        raise HTTPException(status_code=502, detail=str(e)) from None
    return {"variant": request.variant, "path": str(path)}


def register_routes(app):
    app.add_api_route("/lcm-lora/v1/status", status, methods=["GET"])
    app.add_api_route("/lcm-lora/v1/download", start_download, methods=["POST"])
