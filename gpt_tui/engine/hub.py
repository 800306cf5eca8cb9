"""OpenAI's GPT-2 weights from the Hugging Face Hub: find them in the local cache, or download them.

Downloads go through ``huggingface_hub`` so the files land in its shared
cache (the one ``transformers`` uses too), with its progress bar and its
resume: when a connection drops midway, it asks for the missing bytes only
(huggingface_hub 2.x resumes within the same call and drops the partial
file if the call gives up). Environment variables are read at call time, not
when huggingface_hub was imported: HF_HUB_CACHE, HF_HOME and HF_ENDPOINT take
effect as soon as they are set; HF_HUB_OFFLINE counts if set either then or now.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import httpx2  # huggingface_hub's HTTP client
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

from gpt_tui.engine.file_checks import inside
from gpt_tui.errors import UserError

DEFAULT_ENDPOINT = "https://huggingface.co"
CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PROBE_TIMEOUT_S = 8.0

# The four sizes OpenAI released, under the organisation that hosts them now.
MODEL_REPOS: dict[str, str] = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}
MODEL_ALIASES: dict[str, str] = {"gpt2-small": "gpt2", "124M": "gpt2", "355M": "gpt2-medium", "774M": "gpt2-large", "1558M": "gpt2-xl"}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved the way huggingface_hub does it, but now."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    home = os.environ.get("HF_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        home = os.path.join(xdg, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def is_offline() -> bool:
    """Offline by the environment now, or by what huggingface_hub read when it was imported (it blocks requests then)."""
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")):
        return True
    return bool(constants.is_offline_mode())


def canonical_name(name: str) -> str | None:
    """``gpt2``/``124M``/``openai-community/gpt2`` -> ``gpt2``; None for anything else."""
    key = MODEL_ALIASES.get(name, name)
    if key in MODEL_REPOS:
        return key
    for short, repo in MODEL_REPOS.items():
        if name == repo:
            return short
    return None


def repo_candidates(model_id: str) -> list[str]:
    """Repository ids a model may be cached under: ``gpt2`` also lives on as a legacy id without an organisation."""
    short = canonical_name(model_id)
    if short is None:
        return [model_id]
    return [MODEL_REPOS[short], short]


def find_cached(model_id: str, cache_dir: str | Path | None = None) -> Path | None:
    """The cached snapshot folder holding ``config.json`` and a weights file for ``model_id``, if any; no network."""
    cache = str(cache_dir or hf_cache_dir())
    for repo_id in repo_candidates(model_id):
        try:
            config = try_to_load_from_cache(repo_id, CONFIG_FILE, cache_dir=cache)
        except ValueError:  # not a valid repository id
            return None
        if not isinstance(config, str):
            continue
        for weights in WEIGHT_FILES:
            found = try_to_load_from_cache(repo_id, weights, cache_dir=cache)
            if isinstance(found, str) and Path(found).parent == Path(config).parent:
                entry = Path(cache) / f"models--{repo_id.replace('/', '--')}"  # refs/main may name ../../elsewhere
                inside(entry / "snapshots", Path(config).parent, entry / "refs" / "main")
                return Path(config).parent
    return None


def manual_instructions(model: str, cache_dir: Path) -> str:
    """Where to put the files by hand when the Hub cannot be reached."""
    repo = MODEL_REPOS[model]
    folder = cache_dir / f"models--{repo.replace('/', '--')}"
    return (
        f"To install it by hand, fetch config.json and model.safetensors from {DEFAULT_ENDPOINT}/{repo}/tree/main "
        f"on a machine that is online, copy both into one folder and pass that folder as --checkpoint DIR "
        f"(or `gpt-tui import DIR`); or copy a whole Hugging Face cache entry to {folder} "
        f"(refs/main naming a commit, snapshots/<commit>/ holding the files)."
    )


def _probe(repo_id: str, endpoint: str) -> None:
    """One quick metadata request, so that no network fails in seconds instead of after retries with backoff."""
    outcome: dict[str, BaseException | None] = {}

    def request() -> None:
        try:
            url = hf_hub_url(repo_id, CONFIG_FILE, endpoint=endpoint)
            get_hf_file_metadata(url, token=False, timeout=PROBE_TIMEOUT_S, retry_on_errors=False, endpoint=endpoint)
            outcome["error"] = None
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    # A thread with a deadline: name resolution is not bound by the request timeout.
    worker = threading.Thread(target=request, name="hub-probe", daemon=True)
    worker.start()
    worker.join(PROBE_TIMEOUT_S + 2)
    if "error" not in outcome:
        raise TimeoutError(f"no answer from {endpoint} within {PROBE_TIMEOUT_S + 2:.0f} s")
    if outcome["error"] is not None:
        raise outcome["error"]


def _is_network_error(exc: BaseException) -> bool:
    return isinstance(exc, (httpx2.TransportError, OfflineModeIsEnabled, TimeoutError, ConnectionError))


def download(model: str, cache_dir: str | Path | None = None, tqdm_class: Any = None) -> Path:
    """Fetch config.json and the weights of a GPT-2 size into the Hugging Face cache; the snapshot folder.

    Already cached files are not fetched again. Offline, or with the Hub out of
    reach, this fails within seconds with a message saying where to put the files by hand.
    """
    short = canonical_name(model)
    if short is None:
        choices = ", ".join(list(MODEL_REPOS) + list(MODEL_ALIASES))
        raise UserError(f"Unknown model {model!r} to download; choose one of: {choices}.")
    repo_id = MODEL_REPOS[short]
    cache = Path(cache_dir).expanduser() if cache_dir else hf_cache_dir()
    endpoint = hf_endpoint()
    cached = find_cached(short, cache)

    def unreachable(reason: str) -> UserError:
        return UserError(f"Cannot download {short}: {reason}. {manual_instructions(short, cache)}")

    if is_offline():
        if cached is not None:
            return cached
        raise unreachable("offline mode is on (HF_HUB_OFFLINE is set)")
    try:
        _probe(repo_id, endpoint)
    except RepositoryNotFoundError:
        raise UserError(f"{endpoint} has no repository {repo_id}; check HF_ENDPOINT.") from None
    except BaseException as exc:
        if not (_is_network_error(exc) or isinstance(exc, HfHubHTTPError)):
            raise
        if cached is not None:
            return cached
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise unreachable(f"{endpoint} cannot be reached ({detail})") from None

    # GPT-2 is public: no credentials are sent, to the Hub or to whatever HF_ENDPOINT names.
    options: dict[str, Any] = {"cache_dir": str(cache), "endpoint": endpoint, "etag_timeout": PROBE_TIMEOUT_S, "token": False}
    if tqdm_class is not None:
        options["tqdm_class"] = tqdm_class
    try:
        config_path = Path(hf_hub_download(repo_id, CONFIG_FILE, **options))
        for index, weights in enumerate(WEIGHT_FILES):
            try:
                hf_hub_download(repo_id, weights, **options)
                break
            except EntryNotFoundError:
                if index == len(WEIGHT_FILES) - 1:
                    raise UserError(f"{repo_id} on {endpoint} has none of {', '.join(WEIGHT_FILES)}.") from None
    except UserError:
        raise
    except BaseException as exc:
        if not (_is_network_error(exc) or isinstance(exc, (HfHubHTTPError, OSError))):
            raise
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"Downloading {short} from {endpoint} failed ({detail}); run the same command again to retry. "
            f"{manual_instructions(short, cache)}"
        ) from None
    return config_path.parent
