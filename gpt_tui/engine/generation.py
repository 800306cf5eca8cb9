"""Text generation: greedy, temperature / top-k / top-p sampling, and beam search.

Every path feeds the model at most its last ``context_length`` tokens (SPEC 1.7).
The cached path prefills the prompt once and then decodes one token per step.
Once the sequence outgrows the context, every window has shifted position, so the
cache is refilled from the last ``context_length`` tokens each step: slower, but
exactly the tokens the uncached reference loop produces.

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

import codecs
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from gpt_tui.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

MAX_NEW_TOKENS = 100_000
MAX_BEAMS = 64
# top-p counts a cumulative mass within this much of p as having reached p,
# so 0.5 + 0.2 "reaches" 0.7 despite float rounding.
TOP_P_TOLERANCE = 1e-6


@dataclass(frozen=True)
class SamplingConfig:
    """How to pick each next token; ``validate`` checks it against a model's vocabulary."""

    max_new_tokens: int = 50
    temperature: float = 0.0  # 0 = greedy
    top_k: int | None = None
    top_p: float | None = None
    eos_id: int | None = None
    stop_strings: tuple[str, ...] = field(default=())
    seed: int | None = None
    num_beams: int = 1
    length_penalty: float = 1.0

    def __post_init__(self) -> None:
        # A bare string would otherwise become a tuple of single characters.
        stops = self.stop_strings
        if isinstance(stops, str):
            stops = (stops,)
        object.__setattr__(self, "stop_strings", tuple(stops))

    def with_(self, **changes: Any) -> "SamplingConfig":
        return replace(self, **changes)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def validate(self, vocab_size: int) -> None:
        """Raise UserError naming the first setting that cannot work."""
        n = self.max_new_tokens
        if not _is_int(n) or not 1 <= n <= MAX_NEW_TOKENS:
            raise UserError(f"max_new_tokens must be a whole number from 1 to {MAX_NEW_TOKENS}, got {n!r}.")
        t = self.temperature
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or t < 0:
            raise UserError(f"temperature must be 0 (greedy) or a positive number, got {t!r}.")
        k = self.top_k
        if k is not None and (not _is_int(k) or not 1 <= k <= vocab_size):
            raise UserError(
                f"top_k must be a whole number from 1 to the vocabulary size {vocab_size}, got {k!r}; "
                "leave it unset to keep every token."
            )
        p = self.top_p
        if p is not None and (not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 < p <= 1):
            raise UserError(f"top_p must be in (0, 1], got {p!r}; 1 (or unset) keeps every token.")
        e = self.eos_id
        if e is not None and (not _is_int(e) or not 0 <= e < vocab_size):
            raise UserError(f"eos_id must be a token id from 0 to {vocab_size - 1}, got {e!r}.")
        for stop in self.stop_strings:
            if not isinstance(stop, str) or not stop:
                raise UserError(f"Stop strings must be non-empty text, got {stop!r}; remove the empty entry.")
        s = self.seed
        if s is not None and (not _is_int(s) or not 0 <= s < 2**63):
            raise UserError(f"seed must be a whole number from 0 to 2**63 - 1, got {s!r}.")
        b = self.num_beams
        if not _is_int(b) or not 1 <= b <= MAX_BEAMS:
            raise UserError(
                f"num_beams must be a whole number from 1 to {MAX_BEAMS}, got {b!r}; 1 means no beam search."
            )
        if b > 1 and t > 0:
            raise UserError(
                "Beam search is deterministic and does not sample: set temperature to 0 to use "
                f"{b} beams, or set num_beams to 1 to sample."
            )
        lp = self.length_penalty
        if not isinstance(lp, (int, float)) or isinstance(lp, bool) or not math.isfinite(lp):
            raise UserError(f"length_penalty must be a finite number, got {lp!r}.")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class GenerationStats:
    """Filled in by :func:`stream_text` while it runs, for a status line."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    time_to_first_token_s: float | None = None
    elapsed_s: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        """New tokens per second over the whole call, prefill included."""
        return self.new_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens per second after the first one: the steady decoding speed."""
        if self.time_to_first_token_s is None or self.new_tokens < 2:
            return 0.0
        span = self.elapsed_s - self.time_to_first_token_s
        return (self.new_tokens - 1) / span if span > 0 else 0.0


# ---------------------------------------------------------------------------
# Picking the next token


def filter_logits(
    logits: "torch.Tensor", top_k: int | None = None, top_p: float | None = None
) -> "torch.Tensor":
    """Set every logit outside the top-k and then the top-p nucleus to -inf, row by row.

    Top-k keeps exactly k tokens; among equal logits the lower token id wins.
    Top-p keeps the most probable tokens until their probability reaches p
    (always at least one).
    """
    import torch

    out = logits
    vocab = logits.shape[-1]
    if top_k is not None and top_k < vocab:
        order = torch.sort(logits, dim=-1, descending=True, stable=True).indices
        out = out.scatter(-1, order[..., top_k:], float("-inf"))
    if top_p is not None and top_p < 1.0:
        probs = torch.softmax(out.double(), dim=-1)
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        drop_sorted = mass_before >= top_p - TOP_P_TOLERANCE
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        out = out.masked_fill(drop, float("-inf"))
    return out


def _new_generator(seed: int | None) -> "torch.Generator":
    import torch

    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.seed()  # fresh entropy, without touching the global RNG
    else:
        generator.manual_seed(seed)
    return generator


def _check_finite(logits: "torch.Tensor") -> None:
    import torch

    # One reduction instead of isfinite's three passes: a NaN or inf anywhere makes the sum NaN or inf
    # (finite logits large enough to overflow the sum belong to a diverged model too).
    if not bool(torch.isfinite(logits.sum())):
        raise UserError(
            "The model produced NaN or infinite logits, so its weights have probably diverged; "
            "load an earlier checkpoint or train with a lower learning rate."
        )


def _pick_next(logits: "torch.Tensor", sampling: SamplingConfig, generator: "torch.Generator") -> "torch.Tensor":
    """Next token ids ``(B,)`` from last-position logits ``(B, V)``."""
    import torch

    _check_finite(logits)
    if sampling.greedy:  # bf16 -> fp32 is exact, so the argmax needs no upcast
        return logits.argmax(dim=-1)
    logits = logits.float()
    # Shifting by the max keeps a tiny temperature from overflowing to inf.
    scaled = (logits - logits.max(dim=-1, keepdim=True).values) / sampling.temperature
    probs = torch.softmax(filter_logits(scaled, sampling.top_k, sampling.top_p), dim=-1)
    picked = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1)
    return picked.to(logits.device)


# ---------------------------------------------------------------------------
# Shared plumbing


def _model_device(model: "nn.Module") -> "torch.device":
    import torch

    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def prepare_for_inference(model: "nn.Module", precision: str = "auto") -> "nn.Module":
    """The model to decode with: ``model`` itself in fp32, or an eval-mode bf16 copy.

    Decoding a token reads every weight once, so its speed is memory bandwidth;
    bf16 weights halve the bytes. ``auto`` picks bf16 where the hardware computes
    in it natively (GPUs with bf16, CPUs with AMX) and fp32 elsewhere. The copy is
    built directly in bf16 (no second fp32 copy in memory); the caller's model is
    never changed, so training can go on with it.
    """
    import torch

    from gpt_tui.engine.model import GPTModel
    from gpt_tui.engine.precision import resolve_precision

    if precision not in ("auto", "fp32", "bf16"):
        raise UserError(f"precision must be auto, fp32 or bf16, got {precision!r}.")
    if not isinstance(model, GPTModel):
        return model
    device = _model_device(model)
    dtype = torch.bfloat16 if resolve_precision(device, precision) == "bf16" else torch.float32
    if model.tok_emb.weight.dtype == dtype:
        return model
    with torch.device("meta"):
        clone = GPTModel(model.config)
    clone = clone.to(dtype).to_empty(device=device)
    if model.config.tie_weights:
        clone.head.weight = clone.tok_emb.weight
    clone.load_state_dict(model.state_dict())
    return clone.eval().requires_grad_(False)


def _prepare_prompt(prompt_ids: "torch.Tensor", vocab_size: int, device: "torch.device") -> "torch.Tensor":
    """The prompt as a ``(B, T)`` long tensor on ``device``; a 1-D prompt is a batch of one."""
    import torch

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


class _ModelWindow:
    """Runs the model on a growing sequence through its KV cache, seeing at most the last context."""

    def __init__(self, model: "nn.Module", batch_size: int) -> None:
        self.model = model
        self.context = model.config.context_length
        self.cache = model.new_cache(batch_size)

    def prefill(self, window: "torch.Tensor") -> "torch.Tensor":
        """Last-position logits ``(B, V)`` for ``window`` (at most a context long), from an empty cache."""
        self.cache.reset()
        return self.model(window, cache=self.cache, last_only=True)[:, -1]

    def advance(self, history: "torch.Tensor", new_tokens: "torch.Tensor") -> "torch.Tensor":
        """Logits after appending ``new_tokens`` ``(B,)``; ``history`` already ends with them."""
        if self.cache.length < self.cache.capacity:
            return self.model(new_tokens.unsqueeze(1), cache=self.cache, last_only=True)[:, -1]
        return self.prefill(history[:, -self.context :])


# ---------------------------------------------------------------------------
# Sampling and greedy decoding


def stream_generate(
    model: "nn.Module", prompt_ids: "torch.Tensor", sampling: SamplingConfig
) -> Iterator["torch.Tensor"]:
    """Yield the next token ids ``(B,)`` step by step, on the model's device.

    Settings and prompt are checked here, before the first token. Closing the
    iterator early (how a UI cancels) restores the model's train/eval mode.
    With ``num_beams > 1`` the best beams are computed first, then yielded.
    """
    vocab_size = model.config.vocab_size
    sampling.validate(vocab_size)
    device = _model_device(model)
    ids = _prepare_prompt(prompt_ids, vocab_size, device)
    if sampling.num_beams > 1:
        return _out_of_memory_as_user_error(_stream_beams(model, ids, sampling), device, sampling)
    return _out_of_memory_as_user_error(_stream_tokens(model, ids, sampling), device, sampling)


def is_out_of_memory(error: BaseException) -> bool:
    """True for an allocation failure: CUDA's ``OutOfMemoryError``, the CPU allocator's, or Python's."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


def _out_of_memory_as_user_error(
    tokens: Iterator["torch.Tensor"], device: "torch.device", sampling: SamplingConfig
) -> Iterator["torch.Tensor"]:
    """Pass ``tokens`` through; an allocation failure becomes a message that says what to lower.

    The cache and activations are released before the message goes out, so the
    app can take the next prompt (or go on training) on the same device.
    """
    from gpt_tui.engine.runtime import release_device_memory

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


def _stream_tokens(model: "nn.Module", ids: "torch.Tensor", sampling: SamplingConfig) -> Iterator["torch.Tensor"]:
    import torch

    was_training = model.training
    model.eval()
    try:
        generator = _new_generator(sampling.seed)
        eos = sampling.eos_id
        # Inference mode is entered per step, never held across a yield, so the
        # consumer's own code between tokens runs with its usual autograd state.
        with torch.inference_mode():
            runner = _ModelWindow(model, ids.shape[0])
            history = ids[:, -runner.context :]
            logits = runner.prefill(history)
            finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        for step in range(sampling.max_new_tokens):
            with torch.inference_mode():
                token = _pick_next(logits, sampling, generator)
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


def _stream_beams(model: "nn.Module", ids: "torch.Tensor", sampling: SamplingConfig) -> Iterator["torch.Tensor"]:
    out = _beam_search(
        model, ids, sampling.num_beams, sampling.max_new_tokens, sampling.length_penalty, sampling.eos_id
    )
    for column in range(ids.shape[1], out.shape[1]):
        yield out[:, column]


def generate(model: "nn.Module", prompt_ids: "torch.Tensor", sampling: SamplingConfig) -> "torch.Tensor":
    """The prompt followed by the new tokens, ``(B, T + new)``, on the model's device.

    The whole prompt is returned even when only its last context was fed.
    """
    import torch

    if sampling.num_beams > 1:
        return beam_search(
            model,
            prompt_ids,
            sampling.num_beams,
            sampling.max_new_tokens,
            length_penalty=sampling.length_penalty,
            eos_id=sampling.eos_id,
        )
    stream = stream_generate(model, prompt_ids, sampling)
    new = list(stream)
    ids = _prepare_prompt(prompt_ids, model.config.vocab_size, _model_device(model))
    return torch.cat([ids, torch.stack(new, dim=1)], dim=1)


def generate_uncached(model: "nn.Module", prompt_ids: "torch.Tensor", sampling: SamplingConfig) -> "torch.Tensor":
    """The plain loop without a cache: a full forward on the last context every step.

    The oracle for the cached path: same token picking and RNG use, so a seed
    gives the same tokens both ways.
    """
    import torch

    if sampling.num_beams > 1:
        raise ValueError("generate_uncached does not do beam search; use beam_search.")
    vocab_size = model.config.vocab_size
    sampling.validate(vocab_size)
    ids = _prepare_prompt(prompt_ids, vocab_size, _model_device(model))
    context = model.config.context_length
    generator = _new_generator(sampling.seed)
    eos = sampling.eos_id
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for _ in range(sampling.max_new_tokens):
                logits = model(ids[:, -context:])[:, -1]
                token = _pick_next(logits, sampling, generator)
                if eos is not None:
                    token = token.masked_fill(finished, eos)
                    finished = finished | (token == eos)
                ids = torch.cat([ids, token.unsqueeze(1)], dim=1)
                if eos is not None and bool(finished.all()):
                    break
    finally:
        model.train(was_training)
    return ids


# ---------------------------------------------------------------------------
# Beam search


def beam_search(
    model: "nn.Module",
    prompt_ids: "torch.Tensor",
    num_beams: int,
    max_new_tokens: int,
    length_penalty: float = 1.0,
    eos_id: int | None = None,
) -> "torch.Tensor":
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
    ids = _prepare_prompt(prompt_ids, vocab_size, _model_device(model))
    if num_beams == 1:
        return generate(model, ids, sampling)
    return _beam_search(model, ids, num_beams, max_new_tokens, length_penalty, eos_id)


@dataclass
class _Hypotheses:
    """The best finished sequences of one batch row, at most ``size`` of them."""

    size: int
    found: list[tuple[float, list[int]]] = field(default_factory=list)

    def add(self, score: float, tokens: list[int]) -> None:
        self.found.append((score, tokens))
        self.found.sort(key=lambda item: item[0], reverse=True)
        del self.found[self.size :]

    def full(self) -> bool:
        return len(self.found) >= self.size

    def worst(self) -> float:
        return self.found[-1][0]

    def best(self) -> list[int]:
        return self.found[0][1]


def _beam_search(
    model: "nn.Module",
    ids: "torch.Tensor",
    num_beams: int,
    max_new_tokens: int,
    length_penalty: float,
    eos_id: int | None,
) -> "torch.Tensor":
    import torch

    batch, k = ids.shape[0], num_beams
    device = ids.device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            runner = _ModelWindow(model, batch)
            # Prefill each prompt once, then copy its cache to all of its beams.
            history = ids[:, -runner.context :]
            logits = runner.prefill(history)
            beam_rows = torch.arange(batch, device=device).repeat_interleave(k)
            runner.cache.reorder(beam_rows)
            history = history[beam_rows]
            logits = logits[beam_rows]
            generated = torch.empty(batch * k, 0, dtype=torch.long, device=device)
            # Only the first beam of each row is live at the start, so the
            # first step picks k different tokens rather than k copies.
            scores = torch.full((batch, k), float("-inf"), device=device)
            scores[:, 0] = 0.0
            hypotheses = [_Hypotheses(k) for _ in range(batch)]
            done = [False] * batch

            for step in range(max_new_tokens):
                logits = logits.float()
                _check_finite(logits)
                logprobs = torch.log_softmax(logits, dim=-1)
                vocab = logprobs.shape[-1]
                candidates = (scores.reshape(-1, 1) + logprobs).reshape(batch, k * vocab)
                # 2k candidates leave k that do not end in eos (each beam ends at most once).
                top_scores, top_index = candidates.topk(min(2 * k, k * vocab), dim=-1)
                top_scores_l = top_scores.tolist()
                top_beam_l = (top_index // vocab).tolist()
                top_token_l = (top_index % vocab).tolist()
                generated_l = generated.tolist()
                new_len = step + 1

                next_scores = torch.full((batch, k), float("-inf"), device=device)
                next_tokens = torch.full((batch, k), eos_id if eos_id is not None else 0, dtype=torch.long)
                next_source = torch.zeros((batch, k), dtype=torch.long)
                for row in range(batch):
                    if done[row]:
                        continue
                    filled = 0
                    for rank, (score, beam, token) in enumerate(
                        zip(top_scores_l[row], top_beam_l[row], top_token_l[row])
                    ):
                        if eos_id is not None and token == eos_id:
                            if rank < k and score > float("-inf"):
                                tokens = generated_l[row * k + beam] + [token]
                                hypotheses[row].add(score / new_len**length_penalty, tokens)
                            continue
                        next_scores[row, filled] = score
                        next_tokens[row, filled] = token
                        next_source[row, filled] = beam
                        filled += 1
                        if filled == k:
                            break
                    done[row] = _row_done(
                        hypotheses[row], float(next_scores[row, 0]), new_len, max_new_tokens, length_penalty
                    )

                order = (torch.arange(batch).unsqueeze(1) * k + next_source).reshape(-1).to(device)
                next_flat = next_tokens.reshape(-1).to(device)
                generated = torch.cat([generated[order], next_flat.unsqueeze(1)], dim=1)
                scores = next_scores
                if all(done) or step == max_new_tokens - 1:
                    break
                runner.cache.reorder(order)
                history = torch.cat([history[order], next_flat.unsqueeze(1)], dim=1)[:, -runner.context :]
                logits = runner.advance(history, next_flat)

            # Rows that ran out of tokens: their live beams compete with the finished ones.
            generated_l = generated.tolist()
            scores_l = scores.tolist()
            for row in range(batch):
                if done[row]:
                    continue
                for beam in range(k):
                    if scores_l[row][beam] > float("-inf"):
                        tokens = generated_l[row * k + beam]
                        hypotheses[row].add(scores_l[row][beam] / len(tokens) ** length_penalty, tokens)
            best = [h.best() for h in hypotheses]
            width = max(len(tokens) for tokens in best)
            pad = eos_id if eos_id is not None else 0
            new = torch.full((batch, width), pad, dtype=torch.long, device=device)
            for row, tokens in enumerate(best):
                new[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long, device=device)
            return torch.cat([ids, new], dim=1)
    finally:
        model.train(was_training)


def _row_done(
    hypotheses: _Hypotheses, best_live: float, length: int, max_new_tokens: int, length_penalty: float
) -> bool:
    """True when no live beam can still beat the worst of a full set of finished ones.

    Log-probabilities only fall as a beam grows, so the best final score a live
    beam can reach is its current sum over the most favourable final length.
    """
    if not hypotheses.full() or length >= max_new_tokens:
        return False  # at the last step the live beams are scored with the finished ones
    if best_live == float("-inf"):
        return True
    final_length = max_new_tokens if length_penalty > 0 else length + 1
    return hypotheses.worst() >= best_live / final_length**length_penalty


# ---------------------------------------------------------------------------
# Text


class _StopStringFilter:
    """Passes text through, holding back any tail that could still grow into a stop string."""

    def __init__(self, stop_strings: tuple[str, ...]) -> None:
        self.stop_strings = stop_strings
        self.held = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Text safe to show now, and whether a stop string was reached."""
        buffer = self.held + text
        hits = [i for i in (buffer.find(stop) for stop in self.stop_strings) if i >= 0]
        if hits:
            self.held = ""
            return buffer[: min(hits)], True
        keep = 0
        for stop in self.stop_strings:
            for size in range(min(len(stop) - 1, len(buffer)), keep, -1):
                if buffer.endswith(stop[:size]):
                    keep = size
                    break
        cut = len(buffer) - keep
        self.held = buffer[cut:]
        return buffer[:cut], False

    def flush(self, text: str = "") -> str:
        shown, _ = self.push(text)
        shown += self.held
        self.held = ""
        return shown


def stream_text(
    model: "nn.Module",
    prompt: str,
    sampling: SamplingConfig,
    stats: GenerationStats | None = None,
) -> Iterator[str]:
    """Yield the continuation of ``prompt`` as text pieces, as tokens arrive (batch of one).

    Pieces are always whole characters: bytes of a character split across
    tokens are held until it is complete. Generation stops at ``eos_id`` (not
    shown) or at a stop string (not shown). ``stats``, when given, is filled in.
    """
    import torch

    from gpt_tui.engine.tokenizer import encode

    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("The prompt is empty; type some text for the model to continue.")
    ids = encode(prompt)
    tokens = stream_generate(model, torch.tensor([ids], dtype=torch.long), sampling)
    if stats is not None:
        stats.prompt_tokens = len(ids)
    return _text_pieces(tokens, sampling, stats)


def _text_pieces(
    tokens: Iterator["torch.Tensor"], sampling: SamplingConfig, stats: GenerationStats | None
) -> Iterator[str]:
    from gpt_tui.engine.tokenizer import get_tokenizer

    tokenizer = get_tokenizer()
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    stopper = _StopStringFilter(sampling.stop_strings)
    started = time.perf_counter()
    try:
        for step in tokens:
            token = int(step[0])
            if stats is not None:
                now = time.perf_counter() - started
                if stats.time_to_first_token_s is None:
                    stats.time_to_first_token_s = now
                stats.new_tokens += 1
                stats.elapsed_s = now
            if sampling.eos_id is not None and token == sampling.eos_id:
                break
            try:
                piece_bytes = tokenizer.decode_single_token_bytes(token)
            except KeyError:  # an id past the tokenizer's table (a padded vocabulary)
                continue
            piece, stopped = stopper.push(utf8.decode(piece_bytes))
            if piece:
                yield piece
            if stopped:
                return
        tail = stopper.flush(utf8.decode(b"", final=True))
        if tail:
            yield tail
    finally:
        tokens.close()  # type: ignore[attr-defined]
        if stats is not None:
            stats.elapsed_s = time.perf_counter() - started
