"""Text generation: greedy, temperature / top-k / top-p sampling, and beam search.

The entry points callers use; the work is done in ``sampling`` (picking a
token), ``decoding`` (the cached loop), ``beams`` (beam search) and
``text_stream`` (tokens to text).

Decisions a caller should know:

- ``temperature == 0`` is greedy (argmax, ties go to the lowest id); top-k and
  top-p then change nothing.
- Beam search is deterministic, so ``num_beams > 1`` with ``temperature > 0`` is
  refused rather than silently ignoring the sampling settings.
- Sampling draws from a private ``torch.Generator`` on the CPU seeded by
  ``seed``: the global RNG (and so a training run) is never disturbed, and one
  seed gives the same tokens on every device.
- A row that produced ``eos_id`` is finished and keeps yielding ``eos_id``; the
  stream ends when every row is finished. Outputs include the eos token.
- Stop strings are text, so only :func:`stream_text` honours them.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from gpt_tui.engine.beams import best_beams, stream_beams
from gpt_tui.engine.decoding import generate_uncached, prepare_prompt, stream_tokens
from gpt_tui.engine.device import model_device
from gpt_tui.engine.runtime import is_out_of_memory, release_device_memory
from gpt_tui.engine.sampling import filter_logits
from gpt_tui.engine.sampling_config import SamplingConfig
from gpt_tui.engine.text_stream import GenerationStats, text_pieces
from gpt_tui.engine.tokenizer import encode
from gpt_tui.errors import UserError

__all__ = [
    "GenerationStats",
    "SamplingConfig",
    "beam_search",
    "filter_logits",
    "generate",
    "generate_uncached",
    "stream_generate",
    "stream_text",
]


def stream_generate(model: nn.Module, prompt_ids: torch.Tensor, sampling: SamplingConfig) -> Iterator[torch.Tensor]:
    """Yield the next token ids ``(B,)`` step by step, on the model's device.

    Settings and prompt are checked here, before the first token. Closing the
    iterator early (how a UI cancels) restores the model's train/eval mode.
    With ``num_beams > 1`` the best beams are computed first, then yielded.
    """
    vocab_size = model.config.vocab_size
    sampling.validate(vocab_size)
    model = decoding_model(model, sampling)
    device = model_device(model)
    ids = prepare_prompt(prompt_ids, vocab_size, device)
    if sampling.num_beams > 1:
        return _out_of_memory_as_user_error(stream_beams(model, ids, sampling), device, sampling)
    return _out_of_memory_as_user_error(stream_tokens(model, ids, sampling), device, sampling)


def decoding_model(model: nn.Module, sampling: SamplingConfig) -> nn.Module:
    """``model``, or its int8 copy (made once per weights) when ``sampling.quantize`` asks for it.

    An fp32 CPU model decodes through a copy with packed weights that shares its tensors.
    """
    if sampling.quantize == "none":
        from gpt_tui.engine.packed_linear import fp32_decoding_model

        return fp32_decoding_model(model)
    from gpt_tui.engine.precision import prepare_for_inference

    return prepare_for_inference(model, "auto", sampling.quantize)


def _out_of_memory_as_user_error(
    tokens: Iterator[torch.Tensor], device: torch.device, sampling: SamplingConfig
) -> Iterator[torch.Tensor]:
    """Pass ``tokens`` through; an allocation failure becomes a message that says what to lower.

    The cache and activations are released before the message goes out, so the
    app can take the next prompt (or go on training) on the same device.
    """
    try:
        yield from tokens
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        del exc
        release_device_memory()
        beams = f" or Beams ({sampling.num_beams})" if sampling.num_beams > 1 else ""
        raise UserError(
            f"Out of memory on {device} while generating. Lower Max new tokens ({sampling.max_new_tokens}){beams}, "
            "use a smaller model, or generate on another device; nothing was lost."
        ) from None


def generate(model: nn.Module, prompt_ids: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """The prompt followed by the new tokens, ``(B, T + new)``, on the model's device.

    The whole prompt is returned even when only its last context was fed.
    """
    if sampling.num_beams > 1:
        return beam_search(
            decoding_model(model, sampling),
            prompt_ids,
            sampling.num_beams,
            sampling.max_new_tokens,
            length_penalty=sampling.length_penalty,
            eos_id=sampling.eos_id,
        )
    stream = stream_generate(model, prompt_ids, sampling)
    new = list(stream)
    ids = prepare_prompt(prompt_ids, model.config.vocab_size, model_device(model))
    return torch.cat([ids, torch.stack(new, dim=1)], dim=1)


def beam_search(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    num_beams: int,
    max_new_tokens: int,
    length_penalty: float = 1.0,
    eos_id: int | None = None,
) -> torch.Tensor:
    """The most probable continuation found by keeping ``num_beams`` partial sequences per row.

    Beams are ranked by total log-probability. A hypothesis that ends in
    ``eos_id`` is scored ``sum_logprob / new_tokens ** length_penalty``
    (``new_tokens`` counts the eos); so are the surviving beams when
    ``max_new_tokens`` runs out. Rows whose best hypothesis is shorter are
    padded with ``eos_id``. One beam is greedy decoding, stopping at eos.
    Returns ``(B, T + new)`` on the model's device.
    """
    sampling = SamplingConfig(
        max_new_tokens=max_new_tokens, num_beams=num_beams, length_penalty=length_penalty, eos_id=eos_id
    )
    vocab_size = model.config.vocab_size
    sampling.validate(vocab_size)
    ids = prepare_prompt(prompt_ids, vocab_size, model_device(model))
    if num_beams == 1:
        return generate(model, ids, sampling)
    return best_beams(model, ids, num_beams, max_new_tokens, length_penalty, eos_id)


def stream_text(
    model: nn.Module,
    prompt: str,
    sampling: SamplingConfig,
    stats: GenerationStats | None = None,
) -> Iterator[str]:
    """Yield the continuation of ``prompt`` as text pieces, as tokens arrive (batch of one).

    Pieces are always whole characters: bytes of a character split across
    tokens are held until it is complete. Generation stops at ``eos_id`` (not
    shown) or at a stop string (not shown). ``stats``, when given, is filled in.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("The prompt is empty; type some text for the model to continue.")
    ids = encode(prompt)
    tokens = stream_generate(model, torch.tensor([ids], dtype=torch.long), sampling)
    if stats is not None:
        stats.prompt_tokens = len(ids)
    return text_pieces(tokens, sampling, stats)
