"""The extension's HTTP routes, `GET /lcm-lora/v1/status` and `POST /lcm-lora/v1/download`, under the host's rules.

They exist only when the host serves its API (`--api`, or an API-only start: the host's own `/sdapi/v1/*` routes
are there), and they run the same dependencies as the host's routes, which hold its `--api-auth` HTTP Basic check
(A1111 1.6-1.10 and Forge: `Api.auth`, attached by `Api.add_api_route`). A host that protects its routes in another
way while `--api-auth` is set gets an equivalent check against the same credentials, compared in constant time.
Answers carry no server path and no traceback.
"""
import contextlib
from secrets import compare_digest

from fastapi import Depends, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from modules import shared
from pydantic import BaseModel

from lib_lcm.weights import download, registry
from lib_lcm.weights.errors import WeightsError
from lib_lcm.weights.lora_files import LoraFiles
from lib_lcm_webui.download_guard import DownloadRunning, exclusive_download

# A route every host's API adds (A1111 1.6-1.10, Forge); its dependencies are the host's authentication.
HOST_API_ROUTE = "/sdapi/v1/samplers"
LORA_FOLDER = "<Lora folder>"  # what answers say instead of the server's Lora folder path


class DownloadRequest(BaseModel):
    variant: str


def host_api_route(app):
    return next((route for route in getattr(app, "routes", ()) if getattr(route, "path", None) == HOST_API_ROUTE),
                None)


def credentials_check(api_auth: str):
    """A dependency checking HTTP Basic credentials against `--api-auth` ("user:password[,user:password...]")."""
    accounts = dict(pair.split(":", 1) for pair in api_auth.split(",") if ":" in pair)

    def check(credentials: HTTPBasicCredentials = Depends(HTTPBasic())):  # noqa: B008  (FastAPI's idiom)
        expected = accounts.get(credentials.username)
        if expected is None or not compare_digest(credentials.password.encode(), expected.encode()):
            raise HTTPException(status_code=401, detail="Incorrect username or password",
                                headers={"WWW-Authenticate": "Basic"})
    return check


def host_api_dependencies(app):
    """The dependencies of the host's own API routes, or None when the host serves no API."""
    route = host_api_route(app)
    if route is None:
        return None
    dependencies = list(getattr(route, "dependencies", None) or ())
    api_auth = getattr(shared.cmd_opts, "api_auth", None)
    if not dependencies and api_auth:
        dependencies = [Depends(credentials_check(api_auth))]
    return dependencies


def lora_dir() -> str:
    return shared.cmd_opts.lora_dir


def without_server_paths(text: str) -> str:
    return text.replace(str(lora_dir()), LORA_FOLDER)


def _public_row(files: LoraFiles) -> dict:
    """The status row without the server's path; "file" names the file relative to the Lora folder."""
    row = files.status_row()
    del row["path"]
    return {**row, "file": files.relative_name}

@contextlib.contextmanager
def weights_errors_answered(status_code: int):
    """A WeightsError (bad registry, network, disk ...) as an HTTP answer with its message, never a traceback."""
    try:
        yield
    except WeightsError as e:
        raise HTTPException(status_code=status_code, detail=without_server_paths(str(e))) from None


def get_status():
    with weights_errors_answered(500):
        entries = registry.current_registry()
    return {"variants": [_public_row(LoraFiles(entry, lora_dir())) for entry in entries.values()]}


def post_download(request: DownloadRequest):
    with weights_errors_answered(500):
        entries = registry.current_registry()
    entry = entries.get(request.variant)
    if entry is None:
        raise HTTPException(status_code=422, detail=f"unknown variant {request.variant!r}; known: {', '.join(entries)}")
    files = LoraFiles(entry, lora_dir())
    answer = {"variant": entry.variant, "file": files.relative_name, "state": "installed"}
    if files.is_installed():
        return answer
    try:
        with exclusive_download(entry.variant, entry.stem), weights_errors_answered(502):
            download.ensure_weights(entry.variant, lora_dir(), registry=entries)
    except DownloadRunning as e:
        raise HTTPException(status_code=409, detail=f"{e} (GET /lcm-lora/v1/status shows its partial_bytes)") from None
    return answer


def register_routes(app) -> bool:
    """Add the routes where the host serves its API, behind its authentication; False where it serves none."""
    dependencies = host_api_dependencies(app)
    if dependencies is None:
        return False
    app.add_api_route("/lcm-lora/v1/status", get_status, methods=["GET"], dependencies=dependencies)
    app.add_api_route("/lcm-lora/v1/download", post_download, methods=["POST"], dependencies=dependencies)
    return True
