"""The engine's side of talking to a model from the app: fresh models and decode threads."""

from __future__ import annotations

import threading

import torch

from gpt_tui.engine.inference_session import decode_threads, fresh_model


def _threads_in_a_new_thread() -> int:
    seen: list[int] = []
    worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    return seen[0]


def test_a_small_model_decodes_on_one_thread_and_new_threads_keep_every_core():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        small = torch.nn.Linear(4, 4)
        with decode_threads(small, training_active=False) as threads:
            assert threads == 1 and torch.get_num_threads() == 1
            assert _threads_in_a_new_thread() == 2  # a training run started meanwhile is not held to one core
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_fresh_model_is_the_same_for_the_same_seed_and_leaves_the_global_rng_alone():
    torch.manual_seed(7)
    expected_next = torch.rand(1)
    torch.manual_seed(7)
    first = fresh_model("tiny", 3, "cpu")
    assert torch.equal(torch.rand(1), expected_next)  # a run training beside it keeps its random stream
    second, other = fresh_model("tiny", 3, "cpu"), fresh_model("tiny", 4, "cpu")
    assert not first.training
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), other.state_dict().values()))
