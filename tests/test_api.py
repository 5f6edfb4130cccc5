"""The extension's HTTP routes (lib_lcm_webui.api) on a real FastAPI app, next to a stand-in of the host's API route
as A1111 1.6-1.10 and Forge add it (`Api.add_api_route`: `Depends(self.auth)` when `--api-auth` is set). The real
hosts run the same checks in tests/e2e/test_api_auth.py."""
from __future__ import annotations

import json
import threading
from secrets import compare_digest

import pytest
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from fastapi.testclient import TestClient

from lib_lcm.weights import download
from tests.fake_webui import fake_webui

USER, SECRET = "user", "secret"


def host_auth(credentials: HTTPBasicCredentials = Depends(HTTPBasic())):  # noqa: B008
    """A1111's `Api.auth`, for `--api-auth user:secret`."""
    if credentials.username == USER and compare_digest(credentials.password, SECRET):
        return True
    raise HTTPException(status_code=401, detail="Incorrect username or password", headers={"WWW-Authenticate": "Basic"})


def host_app(api=True, host_checks_auth=True):
    app = FastAPI()
    if api:
        dependencies = [Depends(host_auth)] if host_checks_auth else []
        app.add_api_route("/sdapi/v1/samplers", lambda: [], methods=["GET"], dependencies=dependencies)
    return app


@pytest.fixture
def host(tmp_path, monkeypatch):
    calls = []

    def ensure_weights(variant, lora_dir, progress=None, **kwargs):
        calls.append(variant)
        return tmp_path / "Lora" / "LCM-LoRA" / "x.safetensors"

    monkeypatch.setattr(download, "ensure_weights", ensure_weights)
    with fake_webui() as fake:
        from lib_lcm_webui import api

        fake.shared.cmd_opts.lora_dir = str(tmp_path / "Lora")
        fake.shared.cmd_opts.api_auth = None
        fake.api, fake.downloads = api, calls
        yield fake


def client_for(host, app):
    host.api.register_routes(app)
    return TestClient(app)


def test_no_routes_where_the_host_serves_no_api(host):
    app = host_app(api=False)
    assert host.api.register_routes(app) is False
    client = TestClient(app)
    assert client.get("/lcm-lora/v1/status").status_code == 404
    assert client.post("/lcm-lora/v1/download", json={"variant": "sd15"}).status_code == 404
    assert host.downloads == []


def test_without_api_auth_the_routes_answer_like_the_hosts(host):
    client = client_for(host, host_app(host_checks_auth=False))
    answer = client.get("/lcm-lora/v1/status")
    assert answer.status_code == 200
    assert [row["variant"] for row in answer.json()["variants"]][:3] == ["sd15", "sdxl", "ssd1b"]


@pytest.mark.parametrize("host_checks_auth", [True, False], ids=["host-dependency", "own-check"])
def test_with_api_auth_both_routes_need_the_hosts_credentials(host, host_checks_auth):
    host.shared.cmd_opts.api_auth = f"{USER}:{SECRET}"
    client = client_for(host, host_app(host_checks_auth=host_checks_auth))
    for auth in (None, (USER, "wrong"), ("other", SECRET)):
        assert client.get("/lcm-lora/v1/status", auth=auth).status_code == 401
        answer = client.post("/lcm-lora/v1/download", json={"variant": "sd15"}, auth=auth)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Basic"
    assert host.downloads == [], "nothing runs without credentials"
    assert client.get("/lcm-lora/v1/status", auth=(USER, SECRET)).status_code == 200
    assert client.post("/lcm-lora/v1/download", json={"variant": "sd15"}, auth=(USER, SECRET)).status_code == 200
    assert host.downloads == ["sd15"]


def test_the_status_body_holds_no_server_path(host, tmp_path):
    body = client_for(host, host_app(host_checks_auth=False)).get("/lcm-lora/v1/status").json()
    assert str(tmp_path) not in json.dumps(body)
    assert body["variants"][0]["file"] == "LCM-LoRA/lcm-lora-sdv1-5.safetensors"
    assert "lora_dir" not in body and all("path" not in row for row in body["variants"])


def test_only_registry_variants_are_downloaded(host):
    answer = client_for(host, host_app(host_checks_auth=False)).post("/lcm-lora/v1/download", json={"variant": "../x"})
    assert answer.status_code == 422 and "unknown variant '../x'; known: sd15, sdxl, ssd1b" in answer.json()["detail"]
    assert host.downloads == []


def test_a_download_error_names_the_fix_without_a_server_path(host, monkeypatch, tmp_path):
    from lib_lcm.weights.errors import WeightsNetworkError

    def offline(variant, lora_dir, **kwargs):
        raise WeightsNetworkError(f"could not download; save it as {lora_dir}/LCM-LoRA/lcm-lora-sdv1-5.safetensors")

    monkeypatch.setattr(download, "ensure_weights", offline)
    answer = client_for(host, host_app(host_checks_auth=False)).post("/lcm-lora/v1/download", json={"variant": "sd15"})
    assert answer.status_code == 502
    assert answer.json()["detail"] == "could not download; save it as <Lora folder>/LCM-LoRA/lcm-lora-sdv1-5.safetensors"
    assert str(tmp_path) not in answer.text


def test_a_second_download_of_the_same_variant_is_told_about_the_first(host, monkeypatch):
    started, release = threading.Event(), threading.Event()
    transfers = []

    def slow(variant, lora_dir, **kwargs):
        transfers.append(variant)
        started.set()
        assert release.wait(timeout=30)

    monkeypatch.setattr(download, "ensure_weights", slow)
    client = client_for(host, host_app(host_checks_auth=False))
    first = {}
    worker = threading.Thread(target=lambda: first.update(
        answer=client.post("/lcm-lora/v1/download", json={"variant": "sd15"})))
    worker.start()
    assert started.wait(timeout=30)
    # The second caller, while the first transfer runs (called directly: the test client runs one request at a time).
    with pytest.raises(HTTPException) as second:
        host.api.post_download(host.api.DownloadRequest(variant="sd15"))
    release.set()
    worker.join(timeout=30)
    assert second.value.status_code == 409 and "already running" in second.value.detail
    assert first["answer"].status_code == 200
    assert client.post("/lcm-lora/v1/download", json={"variant": "sdxl"}).status_code == 200
    assert transfers == ["sd15", "sdxl"]
