"""The extension's HTTP routes follow the host's API rules on the real WebUI (issue 16):

- with `--api --api-auth user:secret` they answer 401 without (or with wrong) credentials and nothing runs, like
  the host's own routes; with the credentials they work, and the status body holds no server path;
- ten callers asking at once for one variant's download make one transfer, and each gets a clear answer;
- a WebUI serving no API (`--gradio-auth`, no `--api`) has none of our routes, and the panel's server functions
  (the status line's Refresh, the Download button) run only for a logged-in user: gradio's login covers them.
"""
from __future__ import annotations

import http.cookiejar
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

USER, SECRET = "user", "secret"


def without_lcm_loras(tiny_webui_models):
    return {name: path for name, path in tiny_webui_models["loras"].items() if not name.startswith("LCM-LoRA/")}


@pytest.fixture(scope="module")
def hub(tiny_webui_models):
    """The project's fake hub serving the SD 1.5 LoRA the session registry describes; each GET is held at the
    gate until the test opens it, so concurrent requests surely overlap the transfer."""
    from tests.fakehub import FakeHub

    entry = json.loads(Path(tiny_webui_models["registry"]).read_text())["variants"]["sd15"]
    with FakeHub() as fake:
        fake.add(entry["repo_id"], entry["filename"], Path(tiny_webui_models["sd15_lcm_lora"]).read_bytes(),
                 commit=entry["revision"])
        yield fake


@pytest.fixture(scope="module")
def protected(webui_factory, webui_extensions, webui_env, tiny_webui_models, hub):
    """An API-only server started with `--api-auth user:secret`, online against the fake hub, with no LCM-LoRA file
    installed (nothing downloads at start: LCM_LORA_DOWNLOAD=none)."""
    env = {**webui_env, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
           "LCM_LORA_DOWNLOAD": "none"}
    server = webui_factory(extensions=webui_extensions, env=env, loras=without_lcm_loras(tiny_webui_models),
                           api_auth=(USER, SECRET))
    return server.client()


def test_without_credentials_the_routes_answer_401_like_the_hosts_and_nothing_runs(protected, hub):
    before = len(hub.requests)
    for auth in (None, (USER, "wrong")):
        assert protected.request("GET", "/sdapi/v1/samplers", auth=auth)[0] == 401  # the host's own route
        assert protected.request("GET", "/lcm-lora/v1/status", auth=auth)[0] == 401
        assert protected.request("POST", "/lcm-lora/v1/download", {"variant": "sd15"}, auth=auth)[0] == 401
    assert len(hub.requests) == before, "no download started"
    rows = {row["variant"]: row for row in protected.get("/lcm-lora/v1/status")["variants"]}
    assert rows["sd15"]["installed"] is False


def test_with_credentials_the_status_route_works_and_shows_no_server_path(protected, webui_installation):
    status, body = protected.request("GET", "/lcm-lora/v1/status")
    assert status == 200
    text = json.dumps(body)
    assert [row["variant"] for row in body["variants"] if row["family"] == "lcm"] == ["sd15", "sdxl", "ssd1b"]
    assert body["variants"][0]["file"] == "LCM-LoRA/lcm-lora-sdv1-5.safetensors"
    assert '"/' not in text.replace('"https://', "").replace('"http://', ""), "an absolute path in the answer"
    assert str(webui_installation.webui_dir) not in text and "/tmp" not in text


def test_ten_concurrent_downloads_of_one_variant_make_one_transfer(protected, hub):
    hub.gate = threading.Event()
    answers = []

    def ask():
        answers.append(protected.request("POST", "/lcm-lora/v1/download", {"variant": "sd15"}, timeout=300))

    callers = [threading.Thread(target=ask) for _ in range(10)]
    for caller in callers:
        caller.start()
    assert hub.get_started.wait(timeout=120), "no transfer started"
    deadline = time.monotonic() + 120
    while len(answers) < 9 and time.monotonic() < deadline:  # the nine others are answered while it is held
        time.sleep(0.2)
    hub.gate.set()
    for caller in callers:
        caller.join(timeout=300)
    statuses = sorted(status for status, _ in answers)
    assert len(answers) == 10 and set(statuses) <= {200, 409}, answers
    assert statuses.count(200) >= 1
    for status, body in answers:
        if status == 409:
            assert "already running" in body["detail"]
    transfers = [seen for seen in hub.requests if seen.method == "GET"]
    assert len(transfers) == 1, transfers
    rows = {row["variant"]: row for row in protected.get("/lcm-lora/v1/status")["variants"]}
    assert rows["sd15"]["installed"] and rows["sd15"]["verified"]
    assert protected.request("POST", "/lcm-lora/v1/download", {"variant": "sd15"})[0] == 200  # installed: no transfer
    assert len([seen for seen in hub.requests if seen.method == "GET"]) == 1


def test_only_registry_variants_are_downloaded(protected):
    status, body = protected.request("POST", "/lcm-lora/v1/download", {"variant": "../../etc"})
    assert status == 422 and "unknown variant" in body["detail"] and "Traceback" not in json.dumps(body)


# -- a WebUI that serves no API, behind gradio's login -------------------------------------------------------


@pytest.fixture(scope="module")
def ui_only(webui_factory, webui_extensions):
    server = webui_factory(ui=True, api=False, extensions=webui_extensions,
                           args=("--gradio-auth", f"{USER}:{SECRET}"))
    return server


def fetch(opener, url, data=None, form=None):
    if form is not None:
        data, content_type = urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded"
    else:
        data, content_type = (None if data is None else json.dumps(data).encode()), "application/json"
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with opener.open(request, timeout=120) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def refresh_fn_index(config: dict, elem_id: str) -> int:
    """The index of the server function the panel's (hidden) Refresh button runs, from gradio's /config: its
    place in the list (gradio 3), its `id` (gradio 4, where targets are `[component id, event]` pairs)."""
    ids = [c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id]
    for index, dependency in enumerate(config["dependencies"]):
        targets = [t[0] if isinstance(t, list) else t for t in dependency.get("targets", [])]
        if dependency.get("backend_fn") and set(ids) & set(targets):
            return dependency.get("id", index)
    raise AssertionError(f"no server function on {elem_id}")


def test_without_the_api_our_routes_do_not_exist(ui_only):
    opener = urllib.request.build_opener()
    assert fetch(opener, ui_only.base_url + "/lcm-lora/v1/status")[0] == 404
    assert fetch(opener, ui_only.base_url + "/lcm-lora/v1/download", {"variant": "sd15"})[0] == 404


def test_the_panels_server_functions_need_the_gradio_login(ui_only):
    anonymous = urllib.request.build_opener()
    status, _ = fetch(anonymous, ui_only.base_url + "/config")
    assert status in (401, 403), "gradio shows its config to logged-in users only"
    user = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    assert fetch(user, ui_only.base_url + "/login", form={"username": USER, "password": SECRET})[0] == 200
    status, text = fetch(user, ui_only.base_url + "/config")
    assert status == 200
    index = refresh_fn_index(json.loads(text), "lcm_lora_txt2img_refresh")
    call = {"fn_index": index, "data": ["LCM-LoRA", 4], "session_hash": "lcm-lora-e2e"}  # Family, Steps
    status, _ = fetch(anonymous, ui_only.base_url + "/run/predict", call)
    assert status in (401, 403), "an anonymous caller runs nothing"
    status, text = fetch(user, ui_only.base_url + "/run/predict", call)
    assert status == 200 and "lcm-lora-status" in text, text[:500]
