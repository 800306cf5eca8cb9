"""What the app asks of the engine to talk to a model: a fresh one, and how many threads decode.

The UI never builds a model or touches torch's thread settings itself; it
calls these from its worker threads, so the app's first frame stays free of
torch and the model-building rules live with the engine.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import torch

from gpt_tui.engine.device import resolve_device
from gpt_tui.engine.model import GPTModel, get_preset

# Below this size a decoding step is too small to gain from a second intra-op
# thread, and when the CPU is shared a second thread that waits on a busy core
# makes each step many times slower (measured here: 9 vs 500 tokens/s for tiny).
SMALL_MODEL_PARAMETERS = 50_000_000


def fresh_model(preset: str, seed: int, device: str) -> GPTModel:
    """An untrained model of ``preset`` in eval mode, the same for the same seed."""
    target = resolve_device(device)
    # A private RNG scope: a run training at the same time keeps its random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPTModel(get_preset(preset)).to(target).eval()


def parameter_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def reply_threads(model: Any, training_active: bool) -> int | None:
    """Intra-op threads to decode a reply with on the CPU, or None to keep torch's setting.

    One thread while training runs (the trainer's threads own the cores) or for a
    small model; a large model alone on the machine keeps every core.
    """
    device = next(model.parameters()).device
    if device.type != "cpu":
        return None
    if training_active or parameter_count(model) < SMALL_MODEL_PARAMETERS:
        return 1
    return None


@contextlib.contextmanager
def decode_threads(model: Any, training_active: bool) -> Iterator[int | None]:
    """Decode on the thread count :func:`reply_threads` picks, on this thread only.

    torch's thread count is per thread once set, but new threads copy the last
    value set anywhere; a short helper thread sets the old value back at once,
    so a training thread started during the reply still gets every core.
    """
    threads = reply_threads(model, training_active)
    previous = torch.get_num_threads()
    if threads is None or threads == previous:
        yield threads
        return
    torch.set_num_threads(threads)
    helper = threading.Thread(target=torch.set_num_threads, args=(previous,), name="restore-threads")
    helper.start()
    helper.join()
    try:
        yield threads
    finally:
        torch.set_num_threads(previous)
