"""`gpt-tui download` against a stand-in for the Hugging Face Hub on 127.0.0.1.

The server speaks the part of the Hub protocol huggingface_hub's
``hf_hub_download`` uses: HEAD and GET on ``/{repo}/resolve/{revision}/{file}``
with X-Repo-Commit, ETag and Content-Length headers, and byte ranges for
resuming. Name resolution of any other host is refused for the whole module,
so nothing here can reach the real network.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from gpt_tui.engine import hub
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.weights import export_hf, load_model
from gpt_tui.errors import UserError

REPO = "openai-community/gpt2"
COMMIT = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"


@pytest.fixture(autouse=True)
def _local_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs with private caches and cannot resolve any host but the loopback."""
    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost", b"127.0.0.1", b"localhost"):
            raise socket.gaierror(socket.EAI_NONAME, f"test blocks network access to {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; a CI that exports it must not block the local server.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("GPT_TUI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GPT_TUI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GPT_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


@pytest.fixture(scope="module")
def fake_gpt2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A small GPT-2-shaped model in Hugging Face's layout: the files the Hub would serve.

    Its weights file (about 13 MB) is larger than the 10 MB pieces huggingface_hub
    streams in, so a transfer cut after 11 MB has a piece on disk to resume from.
    """
    torch.manual_seed(0)
    model = GPTModel(GPTConfig(vocab_size=50257, context_length=16, emb_dim=64, n_layers=1, n_heads=2, qkv_bias=True, tie_weights=True))
    source = tmp_path_factory.mktemp("fake") / "native.pt"
    torch.save(model.state_dict(), source)
    (source.parent / "native.json").write_text(json.dumps({"n_heads": 2}))
    out = export_hf(str(source), source.parent / "hf")
    return {name: (out / name).read_bytes() for name in ("config.json", "model.safetensors")}


class FakeHub:
    """The Hub's file endpoints, with a switch to cut the first transfer of a file midway."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[tuple[str, str, str | None]] = []  # (method, filename, Range header)
        self.cut: dict[str, int] = {}  # filename -> bytes to send before dropping the first GET
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def gets(self, name: str) -> list[str | None]:
        return [rng for method, file, rng in self.requests if method == "GET" and file == name]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub_state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _resolve(self) -> tuple[str | None, bytes | None]:
                prefix = f"/{REPO}/resolve/main/"
                if not self.path.startswith(prefix):
                    return None, None
                name = self.path[len(prefix):]
                return name, hub_state.files.get(name)

            def _missing(self, name: str | None) -> None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound" if name is not None else "RepoNotFound")
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _headers(self, status: int, body: bytes, length: int, extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(length))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()

            def do_HEAD(self) -> None:  # noqa: N802
                name, body = self._resolve()
                hub_state.requests.append(("HEAD", name or self.path, None))
                if body is None:
                    return self._missing(name)
                self._headers(200, body, len(body))

            def do_GET(self) -> None:  # noqa: N802
                name, body = self._resolve()
                range_header = self.headers.get("Range")
                hub_state.requests.append(("GET", name or self.path, range_header))
                if body is None or name is None:
                    return self._missing(name)
                start = 0
                if range_header:
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    part = body[start:]
                    self._headers(206, body, len(part), {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})
                else:
                    part = body
                    self._headers(200, body, len(body))
                cut = hub_state.cut.pop(name, None)
                if cut is not None:
                    # Promise the whole file, send part of it, and hang up.
                    self.wfile.write(part[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(part)

        return Handler

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def fake_hub(fake_gpt2: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub(fake_gpt2) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def test_download_into_hf_cache_then_load_by_id_offline(fake_hub: FakeHub, fake_gpt2: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = hub.download("gpt2")

    assert folder == tmp_path / "hf-hub" / "models--openai-community--gpt2" / "snapshots" / COMMIT
    assert (folder / "model.safetensors").read_bytes() == fake_gpt2["model.safetensors"]
    assert (folder / "config.json").read_bytes() == fake_gpt2["config.json"]
    assert (tmp_path / "hf-hub" / "models--openai-community--gpt2" / "refs" / "main").read_text() == COMMIT

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub.requests.clear()
    loaded = load_model("gpt2")
    assert loaded.kind == "huggingface" and loaded.config.emb_dim == 64
    assert fake_hub.requests == []  # loading by id touches no server


def test_interrupted_download_resumes_with_a_range_request(fake_hub: FakeHub, fake_gpt2: dict[str, bytes]) -> None:
    weights = fake_gpt2["model.safetensors"]
    cut = 11 * 1024 * 1024
    assert len(weights) > cut
    fake_hub.cut["model.safetensors"] = cut

    folder = hub.download("gpt2")

    first, second = fake_hub.gets("model.safetensors")
    assert first is None and second is not None
    resumed_at = int(second.removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= cut  # the second request asked only for what was missing
    assert (folder / "model.safetensors").read_bytes() == weights
    assert not list((folder.parent.parent / "blobs").glob("*.incomplete"))


def test_cli_download_with_cache_dir(fake_hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gpt_tui.cli import main

    cache = tmp_path / "elsewhere"
    assert main(["download", "gpt2", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    snapshot = cache / "models--openai-community--gpt2" / "snapshots" / COMMIT
    assert str(snapshot) in out
    assert load_model(str(snapshot)).config.emb_dim == 64
    fake_hub.requests.clear()
    assert main(["download", "gpt2", "--cache-dir", str(cache)]) == 0  # already there: nothing fetched again
    assert fake_hub.gets("model.safetensors") == []


def test_offline_mode_fails_at_once_with_manual_instructions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(UserError) as info:
        hub.download("gpt2-medium")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "offline" in message and "--checkpoint" in message
    assert str(tmp_path / "hf-hub" / "models--openai-community--gpt2-medium") in message


def test_unreachable_hub_fails_within_seconds(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from gpt_tui.cli import main

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    assert main(["download", "gpt2-large"]) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert "cannot be reached" in err and "config.json and model.safetensors" in err and "Traceback" not in err


def test_default_endpoint_unresolvable_fails_within_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_ENDPOINT", raising=False)  # huggingface.co, which this module cannot resolve
    start = time.monotonic()
    with pytest.raises(UserError, match="cannot be reached"):
        hub.download("gpt2-xl")
    assert time.monotonic() - start < 10


def test_offline_with_files_cached_is_fine(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    first = hub.download("124M")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.download("gpt2") == first


def test_unknown_model_name() -> None:
    with pytest.raises(UserError, match="gpt2-medium"):
        hub.download("gpt5")


def test_pytorch_bin_when_repo_has_no_safetensors(fake_hub: FakeHub, fake_gpt2: dict[str, bytes], tmp_path: Path) -> None:
    from safetensors.torch import load

    state = load(fake_gpt2["model.safetensors"])
    bin_path = tmp_path / "pytorch_model.bin"
    torch.save(state, bin_path)
    fake_hub.files = {"config.json": fake_gpt2["config.json"], "pytorch_model.bin": bin_path.read_bytes()}
    folder = hub.download("gpt2")
    assert (folder / "pytorch_model.bin").is_file() and not (folder / "model.safetensors").exists()
    assert load_model("gpt2").config.emb_dim == 64
