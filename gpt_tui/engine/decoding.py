"""Decoding one token at a time through the KV cache, and the uncached loop it must agree with.

Every path feeds the model at most its last ``context_length`` tokens (SPEC 1.7).
The cached path prefills the prompt once and then decodes one token per step.
Once the sequence outgrows the context, every window has shifted position, so the
cache is refilled from the last ``context_length`` tokens each step: slower, but
exactly the tokens the uncached reference loop produces.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from gpt_tui.engine.device import model_device
from gpt_tui.engine.sampling import new_generator, pick_next
from gpt_tui.engine.sampling_config import SamplingConfig
from gpt_tui.errors import UserError


def prepare_prompt(prompt_ids: torch.Tensor, vocab_size: int, device: torch.device) -> torch.Tensor:
    """The prompt as a ``(B, T)`` long tensor on ``device``; a 1-D prompt is a batch of one."""
    if not isinstance(prompt_ids, torch.Tensor):
        raise UserError("The prompt must be a tensor of token ids; encode the text first.")
    ids = prompt_ids.unsqueeze(0) if prompt_ids.dim() == 1 else prompt_ids
    if ids.dim() != 2:
        raise UserError(f"The prompt must have shape (batch, tokens), got {tuple(prompt_ids.shape)}.")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise UserError("The prompt is empty; type some text for the model to continue.")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise UserError(f"The prompt must hold integer token ids, got {ids.dtype}.")
    ids = ids.long()
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise UserError(
            f"The prompt holds token id {bad}, outside this model's vocabulary of {vocab_size}; "
            "use the tokenizer the model was trained with."
        )
    return ids.to(device)


class ModelWindow:
    """Runs the model on a growing sequence through its KV cache, seeing at most the last context."""

    def __init__(self, model: nn.Module, batch_size: int) -> None:
        self.model = model
        self.context = model.config.context_length
        self.cache = model.new_cache(batch_size)

    def prefill(self, window: torch.Tensor) -> torch.Tensor:
        """Last-position logits ``(B, V)`` for ``window`` (at most a context long), from an empty cache."""
        self.cache.reset()
        return self.model(window, cache=self.cache, last_only=True)[:, -1]

    def advance(self, history: torch.Tensor, new_tokens: torch.Tensor) -> torch.Tensor:
        """Logits after appending ``new_tokens`` ``(B,)``; ``history`` already ends with them."""
        if self.cache.length < self.cache.capacity:
            return self.model(new_tokens.unsqueeze(1), cache=self.cache, last_only=True)[:, -1]
        return self.prefill(history[:, -self.context :])


def stream_tokens(model: nn.Module, ids: torch.Tensor, sampling: SamplingConfig) -> Iterator[torch.Tensor]:
    """Sampled (or greedy) next tokens ``(B,)`` for a checked prompt ``ids``, one step per item."""
    was_training = model.training
    model.eval()
    try:
        generator = new_generator(sampling.seed)
        eos = sampling.eos_id
        # Inference mode is entered per step, never held across a yield, so the
        # consumer's own code between tokens runs with its usual autograd state.
        with torch.inference_mode():
            runner = ModelWindow(model, ids.shape[0])
            history = ids[:, -runner.context :]
            logits = runner.prefill(history)
            finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        for step in range(sampling.max_new_tokens):
            with torch.inference_mode():
                token = pick_next(logits, sampling, generator)
                if eos is not None:
                    token = token.masked_fill(finished, eos)
                    finished = finished | (token == eos)
            yield token
            if step == sampling.max_new_tokens - 1 or (eos is not None and bool(finished.all())):
                return
            with torch.inference_mode():
                history = torch.cat([history, token.unsqueeze(1)], dim=1)[:, -runner.context :]
                logits = runner.advance(history, token)
    finally:
        model.train(was_training)


def generate_uncached(model: nn.Module, prompt_ids: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """The plain loop without a cache: a full forward on the last context every step.

    The oracle for the cached path: same token picking and RNG use, so a seed
    gives the same tokens both ways.
    """
    if sampling.num_beams > 1:
        raise ValueError("generate_uncached does not do beam search; use beam_search.")
    vocab_size = model.config.vocab_size
    sampling.validate(vocab_size)
    ids = prepare_prompt(prompt_ids, vocab_size, model_device(model))
    context = model.config.context_length
    generator = new_generator(sampling.seed)
    eos = sampling.eos_id
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for _ in range(sampling.max_new_tokens):
                logits = model(ids[:, -context:])[:, -1]
                token = pick_next(logits, sampling, generator)
                if eos is not None:
                    token = token.masked_fill(finished, eos)
                    finished = finished | (token == eos)
                ids = torch.cat([ids, token.unsqueeze(1)], dim=1)
                if eos is not None and bool(finished.all()):
                    break
    finally:
        model.train(was_training)
    return ids
