"""WebUI glue: `GET /lcm-lora/v1/status` and `POST /lcm-lora/v1/download`, registered in on_app_started.

No `from __future__ import annotations` here: FastAPI must see the request model class itself in
`start_download`'s annotation, and that class is local to register_routes.
"""


def lora_dir() -> str:
    from modules import shared

    return shared.cmd_opts.lora_dir


def register_routes(app):
    from fastapi import HTTPException
    from pydantic import BaseModel

    from lib_lcm import download, weights

    class DownloadRequest(BaseModel):
        variant: str

    def status():
        return {"lora_dir": lora_dir(), "variants": weights.weights_status(lora_dir())}

    def start_download(request: DownloadRequest):
        known = [entry["variant"] for entry in weights.weights_status(lora_dir())]
        if request.variant not in known:
            raise HTTPException(status_code=422, detail=f"unknown variant {request.variant!r}; known: {', '.join(known)}")
        try:
            path = download.ensure_weights(request.variant, lora_dir())
        except download.WeightsError as e:
            raise HTTPException(status_code=502, detail=str(e)) from None
        return {"variant": request.variant, "path": str(path)}

    app.add_api_route("/lcm-lora/v1/status", status, methods=["GET"])
    app.add_api_route("/lcm-lora/v1/download", start_download, methods=["POST"])
