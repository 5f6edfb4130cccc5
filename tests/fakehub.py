"""A local stand-in for the Hugging Face hub's file endpoints, to drive the real huggingface_hub client.

Serves on 127.0.0.1 (port 0, picked by the OS):

- ``HEAD /{repo}/resolve/{rev}/{file}``: ``X-Repo-Commit`` (40 hex), ``ETag`` and ``X-Linked-Etag``
  (the sha256, as the hub does for LFS files), ``X-Linked-Size`` and ``Content-Length``; with
  ``redirect=True`` a 302 to ``http://localhost:{port}/cdn/{sha256}``, a different origin, like the hub's
  CDN redirect. Unknown repo / revision / file: 404 with the hub's ``X-Error-Code``.
- ``GET`` of either URL: the bytes, honouring ``Range: bytes=N-[M]`` with 206 + ``Content-Range``.

Knobs (set them between requests): ``status`` answers every request with that code; ``cuts``/``cut_after``
close the next ``cuts`` bodies after ``cut_after`` bytes; ``stall_head`` never answers HEAD;
``stalls``/``stall_after`` make the next ``stalls`` bodies hang after ``stall_after`` bytes; ``corrupt``
serves wrong bytes of the right length; ``renamed`` maps an old repo id to its new one, answered with a
relative 307 like the hub's renamed-repo redirect; ``gate`` (an Event) holds every GET until set, ``get_started``
is set when one waits there. ``requests`` lists what was asked (method, path, Range header, status,
body bytes sent).

Also: ``lora_bytes`` (small LoRA-like safetensors payloads) and ``registry_json`` (an
``LCM_LORA_REGISTRY`` document for files on a hub).

Hubs that cannot be reached, all on 127.0.0.1 (no packet leaves the machine): ``SilentListener`` accepts
connections (the kernel's backlog does) and never answers; ``refused_url()`` names a port nobody listens on;
``UNRESOLVABLE_URL`` names a ``.invalid`` host, which ``refuse_invalid_hosts`` (in-process) or the
``sitecustomize`` written by ``dns_failure_hook`` (subprocesses) fails to resolve without asking a resolver.
"""
from __future__ import annotations

import hashlib
import http.server
import inspect
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_CDN = re.compile(r"^/cdn/(?P<etag>[0-9a-f]{64})$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class HubFile:
    repo_id: str
    filename: str
    data: bytes
    commit: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Seen:
    method: str
    path: str
    range: str | None
    host: str
    status: int = 0
    sent: int = 0


class FakeHub:
    def __init__(self, redirect: bool = False):
        self.redirect = redirect
        self.files: dict[tuple[str, str], HubFile] = {}
        self.requests: list[Seen] = []
        self.status: int | None = None
        self.cuts = 0
        self.cut_after = 0
        self.stall_head = False
        self.stall_after: int | None = None
        self.stalls = 0
        self.corrupt = False
        self.renamed: dict[str, str] = {}
        self.gate: threading.Event | None = None
        self.get_started = threading.Event()
        self._stopping = threading.Event()
        self._server = None
        self._thread = None

    def add(self, repo_id: str, filename: str, data: bytes, commit: str | None = None) -> HubFile:
        commit = commit or hashlib.sha1(repo_id.encode() + data).hexdigest()
        hub_file = HubFile(repo_id, filename, data, commit)
        self.files[(repo_id, filename)] = hub_file
        return hub_file

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def gets(self) -> list[Seen]:
        """GET requests for file bytes (huggingface_hub 2.x also asks ``/api/...`` for its own purposes)."""
        return [r for r in self.requests if r.method == "GET" and (_RESOLVE.match(r.path) or _CDN.match(r.path))]

    def start(self) -> FakeHub:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.hub = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="fakehub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self.gate is not None:
            self.gate.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def _lookup(self, path: str):
        """(HubFile, None) or (None, (status, error code))."""
        match = _CDN.match(path)
        if match:
            for hub_file in self.files.values():
                if hub_file.sha256 == match["etag"]:
                    return hub_file, None
            return None, (404, "EntryNotFound")
        match = _RESOLVE.match(path)
        if not match:
            return None, (404, "RepoNotFound")
        repo, rev, filename = match["repo"], unquote(match["rev"]), unquote(match["file"])
        if not any(key[0] == repo for key in self.files):
            return None, (404, "RepoNotFound")
        hub_file = self.files.get((repo, filename))
        if hub_file is None:
            return None, (404, "EntryNotFound")
        if rev not in ("main", hub_file.commit):
            return None, (404, "RevisionNotFound")
        return hub_file, None


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    @property
    def hub(self) -> FakeHub:
        return self.server.hub

    def _begin(self, method: str) -> Seen:
        seen = Seen(method, self.path, self.headers.get("Range"), self.headers.get("Host", ""))
        self.hub.requests.append(seen)
        self.close_connection = True
        return seen

    def _start_reply(self, seen: Seen, status: int, headers: dict) -> None:
        seen.status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()

    def _reply(self, seen: Seen, status: int, headers: dict, body: bytes = b"") -> None:
        self._start_reply(seen, status, headers)
        if body and self.command != "HEAD":
            self.wfile.write(body)
            seen.sent += len(body)

    def _error(self, seen: Seen, status: int, code: str | None) -> None:
        body = f'{{"error": "fake hub {status}"}}'.encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        if code:
            headers["X-Error-Code"] = code
            headers["X-Error-Message"] = f"fake hub: {code}"
        self._reply(seen, status, headers, body)

    def _file_headers(self, hub_file: HubFile) -> dict:
        return {
            "X-Repo-Commit": hub_file.commit,
            "ETag": f'"{hub_file.sha256}"',
            "X-Linked-Etag": f'"{hub_file.sha256}"',
            "X-Linked-Size": str(len(hub_file.data)),
            "Accept-Ranges": "bytes",
        }

    def _renamed(self, seen: Seen) -> bool:
        match = _RESOLVE.match(self.path)
        new = match and self.hub.renamed.get(match["repo"])
        if not new:
            return False
        location = f"/{new}/resolve/{match['rev']}/{match['file']}"
        self._reply(seen, 307, {"Location": location, "Content-Length": "0"})
        return True

    def do_HEAD(self):
        seen = self._begin("HEAD")
        hub = self.hub
        if hub.stall_head:
            hub._stopping.wait(60)
            return
        if self._renamed(seen):
            return
        if hub.status is not None:
            return self._error(seen, hub.status, "RepoNotFound" if hub.status == 404 else None)
        hub_file, error = hub._lookup(self.path)
        if error:
            return self._error(seen, *error)
        headers = self._file_headers(hub_file)
        if hub.redirect and self.path.startswith("/") and not self.path.startswith("/cdn/"):
            headers["Location"] = f"http://localhost:{hub.port}/cdn/{hub_file.sha256}"
            headers["Content-Length"] = "0"
            return self._reply(seen, 302, headers)
        headers["Content-Length"] = str(len(hub_file.data))
        self._reply(seen, 200, headers)

    def do_GET(self):
        seen = self._begin("GET")
        hub = self.hub
        if hub.gate is not None:
            hub.get_started.set()
            hub.gate.wait(60)
        if hub.status is not None:
            return self._error(seen, hub.status, "RepoNotFound" if hub.status == 404 else None)
        if self._renamed(seen):
            return
        hub_file, error = hub._lookup(self.path)
        if error:
            return self._error(seen, *error)
        if hub.redirect and not self.path.startswith("/cdn/"):
            headers = self._file_headers(hub_file)
            headers["Location"] = f"http://localhost:{hub.port}/cdn/{hub_file.sha256}"
            headers["Content-Length"] = "0"
            return self._reply(seen, 302, headers)
        data = bytes(b ^ 0xFF for b in hub_file.data) if hub.corrupt else hub_file.data
        start, stop, status = 0, len(data), 200
        match = _RANGE.match(seen.range or "")
        if match:
            start = int(match[1])
            stop = min(int(match[2]) + 1, len(data)) if match[2] else len(data)
            status = 206
            if start >= len(data):
                return self._error(seen, 416, None)
        headers = self._file_headers(hub_file)
        headers["Content-Length"] = str(stop - start)
        headers["Content-Type"] = "application/octet-stream"
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
        body = data[start:stop]
        self._start_reply(seen, status, headers)
        limit = len(body)
        if hub.cuts > 0:
            hub.cuts -= 1
            limit = min(limit, hub.cut_after)
        elif hub.stalls > 0 and hub.stall_after is not None:
            hub.stalls -= 1
            self._send(seen, body[: hub.stall_after])
            hub._stopping.wait(60)
            return
        self._send(seen, body[:limit])

    def _send(self, seen: Seen, chunk: bytes) -> None:
        try:
            self.wfile.write(chunk)
            self.wfile.flush()
            seen.sent += len(chunk)
        except OSError:
            pass


def lora_bytes(context_dim: int, rank: int = 4, seed: int = 0, extra: dict | None = None) -> bytes:
    """A few-KB safetensors file shaped like an LCM-LoRA (kohya names of diffusers modules)."""
    import numpy as np
    from safetensors.numpy import save

    rng = np.random.default_rng(seed)
    tensors = {}
    for module, width_in, width_out in (
        ("down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", 320, 320),
        ("down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", context_dim, 320),
        ("mid_block_attentions_0_transformer_blocks_0_attn2_to_v", context_dim, 1280),
    ):
        name = f"lora_unet_{module}"
        tensors[f"{name}.lora_down.weight"] = rng.standard_normal((rank, width_in)).astype(np.float16)
        tensors[f"{name}.lora_up.weight"] = rng.standard_normal((width_out, rank)).astype(np.float16)
        tensors[f"{name}.alpha"] = np.array(float(rank), dtype=np.float16)
    tensors.update(extra or {})
    return save(tensors)


def registry_json(entries: dict[str, dict]) -> dict:
    """``{"schema_version": 1, "variants": entries}`` with the defaults every test entry shares."""
    variants = {}
    for variant, fields in entries.items():
        entry = {"filename": "pytorch_lora_weights.safetensors", "stem": f"test-{variant}", "verified": True,
                 "sd_version": "SD1", "context_dim": 768}
        entry.update(fields)
        variants[variant] = entry
    return {"schema_version": 1, "variants": variants}


UNRESOLVABLE_URL = "http://hub.nonexistent.invalid"


class SilentListener:
    """A TCP port on 127.0.0.1 that accepts connections (into the backlog) and never answers a byte."""

    def __enter__(self):
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        return self

    def __exit__(self, *exc_info):
        self._socket.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"


def refused_url() -> str:
    """An http URL on 127.0.0.1 whose port was just free: connecting is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def refuse_invalid_hosts(getaddrinfo):
    """``socket.getaddrinfo`` failing for ``*.invalid`` hosts as a resolver without an answer does (no query)."""

    def resolve(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.rstrip(".").lower().endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return getaddrinfo(host, *args, **kwargs)

    return resolve


def dns_failure_hook(folder) -> str:
    """Write a ``sitecustomize.py`` into ``folder`` that installs ``refuse_invalid_hosts`` in every Python
    started with ``folder`` on PYTHONPATH (workers included); returns the folder for PYTHONPATH."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = inspect.getsource(refuse_invalid_hosts)
    (folder / "sitecustomize.py").write_text(
        f"import socket\n\n\n{source}\n\nsocket.getaddrinfo = refuse_invalid_hosts(socket.getaddrinfo)\n"
    )
    return str(folder)
