"""Generation: cached vs uncached, sampling filters, eos, beam search, streaming text."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gpt_tui.engine.generation import (
    GenerationStats,
    SamplingConfig,
    beam_search,
    filter_logits,
    generate,
    generate_uncached,
    stream_generate,
    stream_text,
)
from gpt_tui.engine.model import GPTConfig, GPTModel
from gpt_tui.engine.tokenizer import EOT_ID, VOCAB_SIZE, encode
from gpt_tui.errors import UserError

VOCAB = 96
CONTEXT = 16


def tiny_model(seed: int = 0, dtype: torch.dtype = torch.float32) -> GPTModel:
    """A random model with a short context, so 40 new tokens run well past it."""
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=VOCAB, context_length=CONTEXT, emb_dim=32, n_layers=2, n_heads=4, drop_rate=0.1)
    model = GPTModel(config)
    with torch.no_grad():  # spread the logits so near-ties between top tokens are rare
        model.head.weight.mul_(10)
    return model.to(dtype)


def prompts(batch: int, length: int = 5, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


class _FakeCache:
    def __init__(self, capacity: int) -> None:
        self.length = 0
        self.capacity = capacity

    def reset(self) -> None:
        self.length = 0

    def reorder(self, index: torch.Tensor) -> None:
        pass  # the fake models keep no per-row state


class FakeModel(nn.Module):
    """Logits chosen by the test, through the same interface as GPTModel (cache included)."""

    def __init__(self, vocab_size: int, context_length: int = 1024) -> None:
        super().__init__()
        self.config = GPTConfig(vocab_size=vocab_size, context_length=context_length, emb_dim=4, n_layers=1, n_heads=1)
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device
        self.calls: list[int] = []  # tokens fed per forward call

    def new_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> _FakeCache:
        return _FakeCache(self.config.context_length)

    def next_logits(self, ids: torch.Tensor, position: int) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, idx: torch.Tensor, cache: _FakeCache | None = None, last_only: bool = False) -> torch.Tensor:
        b, t = idx.shape
        start = cache.length if cache is not None else 0
        if start + t > self.config.context_length:
            raise ValueError("past the context")
        self.calls.append(t)
        rows = range(t - 1, t) if last_only else range(t)
        out = torch.stack([self.next_logits(idx[:, i], start + i) for i in rows], dim=1)
        if cache is not None:
            cache.length = start + t
        return out


class BigramModel(FakeModel):
    """Next-token log-probabilities depend only on the previous token."""

    def __init__(self, table: torch.Tensor, context_length: int = 1024) -> None:
        super().__init__(table.shape[0], context_length)
        self.table = table.log_softmax(dim=-1)

    def next_logits(self, ids: torch.Tensor, position: int) -> torch.Tensor:
        return self.table[ids]


class ScriptedModel(FakeModel):
    """Emits ``script`` after a prompt of ``prompt_len`` tokens, then ``after`` forever."""

    def __init__(self, script: list[int], prompt_len: int, after: int = EOT_ID) -> None:
        super().__init__(VOCAB_SIZE)
        self.script, self.prompt_len, self.after = script, prompt_len, after

    def next_logits(self, ids: torch.Tensor, position: int) -> torch.Tensor:
        index = position + 1 - self.prompt_len
        token = self.script[index] if 0 <= index < len(self.script) else self.after
        logits = torch.zeros(ids.shape[0], VOCAB_SIZE)
        logits[:, token] = 10.0
        return logits


def sequence_logprob(model: nn.Module, prompt: torch.Tensor, out: torch.Tensor) -> float:
    """Total log-probability of the new tokens of one row, by full forwards on the last context."""
    model.eval()
    context = model.config.context_length
    total = 0.0
    with torch.no_grad():
        for pos in range(prompt.shape[1], out.shape[1]):
            logits = model(out[:, :pos][:, -context:])[:, -1].float()
            total += float(logits.log_softmax(-1)[0, out[0, pos]])
    return total


# --- cached path == uncached reference ------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
def test_cached_greedy_matches_uncached_past_context(batch: int) -> None:
    model = tiny_model()
    prompt = prompts(batch)
    sampling = SamplingConfig(max_new_tokens=40)
    cached = generate(model, prompt, sampling)
    reference = generate_uncached(model, prompt, sampling)
    assert cached.shape == (batch, 5 + 40)
    assert torch.equal(cached, reference)
    assert torch.equal(cached[:, :5], prompt)


def test_batch_rows_are_independent() -> None:
    model = tiny_model()
    prompt = prompts(3)
    sampling = SamplingConfig(max_new_tokens=30)
    together = generate(model, prompt, sampling)
    for row in range(3):
        alone = generate(model, prompt[row : row + 1], sampling)
        assert torch.equal(together[row : row + 1], alone)


def test_sampled_cached_matches_uncached_with_same_seed() -> None:
    model = tiny_model()
    prompt = prompts(2)
    sampling = SamplingConfig(max_new_tokens=40, temperature=0.9, top_k=30, top_p=0.95, seed=1234)
    assert torch.equal(generate(model, prompt, sampling), generate_uncached(model, prompt, sampling))


def test_prompt_longer_than_context_is_cropped() -> None:
    model = tiny_model()
    long_prompt = prompts(2, length=CONTEXT + 9, seed=5)
    sampling = SamplingConfig(max_new_tokens=12)
    out = generate(model, long_prompt, sampling)
    assert torch.equal(out[:, : CONTEXT + 9], long_prompt)  # the whole prompt comes back
    cropped = generate(model, long_prompt[:, -CONTEXT:], sampling)
    assert torch.equal(out[:, CONTEXT + 9 :], cropped[:, CONTEXT:])
    assert torch.equal(out, generate_uncached(model, long_prompt, sampling))


def test_bf16_model_generates_with_an_fp32_cache_on_a_cpu() -> None:
    model = tiny_model(dtype=torch.bfloat16)
    out = generate(model, prompts(2), SamplingConfig(max_new_tokens=20, temperature=1.0, seed=0))
    assert out.shape == (2, 25)
    assert int(out.min()) >= 0 and int(out.max()) < VOCAB
    assert model.new_cache(1).keys[0].dtype == torch.float32  # one-query attention is fastest in fp32 there
    assert model.new_cache(1, torch.bfloat16).keys[0].dtype == torch.bfloat16


# --- filters and sampling ---------------------------------------------------


HAND_MADE = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05]).log()


def kept(logits: torch.Tensor) -> set[int]:
    return set(torch.nonzero(torch.isfinite(logits)).flatten().tolist())


@pytest.mark.parametrize(
    ("top_k", "top_p", "expected"),
    [
        (2, None, {0, 1}),
        (1, None, {0}),
        (5, None, {0, 1, 2, 3, 4}),
        (None, 0.7, {0, 1}),
        (None, 0.71, {0, 1, 2}),
        (None, 0.5, {0}),
        (None, 0.1, {0}),
        (None, 1.0, {0, 1, 2, 3, 4}),
        # top-p after top-k sees the renormalised top 3: 0.5/0.85 = 0.588, then 0.824
        (3, 0.58, {0}),
        (3, 0.83, {0, 1, 2}),
        (2, 0.99, {0, 1}),
    ],
)
def test_filter_keeps_the_right_tokens(top_k: int | None, top_p: float | None, expected: set[int]) -> None:
    shuffled = torch.tensor([3, 0, 4, 1, 2])  # order in the vocabulary must not matter
    logits = HAND_MADE[shuffled]
    out = filter_logits(logits.unsqueeze(0), top_k, top_p)[0]
    assert kept(out) == {int(shuffled.tolist().index(i)) for i in expected}
    finite = torch.isfinite(out)
    assert torch.equal(out[finite], logits[finite])  # kept logits are untouched


def test_top_p_counts_mass_that_reaches_p_up_to_rounding() -> None:
    # In float64, 0.6 + 0.3 sums to 0.8999999999999999: the nucleus is still {0.6, 0.3}.
    logits = torch.tensor([[0.6, 0.3, 0.1]], dtype=torch.float64).log()
    assert kept(filter_logits(logits, top_p=0.9)[0]) == {0, 1}
    assert kept(filter_logits(logits, top_p=0.91)[0]) == {0, 1, 2}


def test_filter_works_row_by_row_and_breaks_ties_by_lowest_id() -> None:
    logits = torch.stack([HAND_MADE, HAND_MADE.flip(0), torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0])])
    out = filter_logits(logits, top_k=2)
    assert kept(out[0]) == {0, 1}
    assert kept(out[1]) == {3, 4}
    assert kept(out[2]) == {1, 2}
    nucleus = filter_logits(logits[:2], top_p=0.7)
    assert kept(nucleus[0]) == {0, 1} and kept(nucleus[1]) == {3, 4}


def test_sampling_only_draws_kept_tokens() -> None:
    model = BigramModel(torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(0)))
    prompt = torch.zeros(1, 1, dtype=torch.long)
    allowed = set(model.table[0].topk(3).indices.tolist())
    for seed in range(40):
        out = generate(model, prompt, SamplingConfig(max_new_tokens=1, temperature=1.0, top_k=3, seed=seed))
        assert int(out[0, 1]) in allowed


def test_seed_reproduces_and_different_seeds_differ() -> None:
    model = tiny_model()
    prompt = prompts(1)
    first = generate(model, prompt, SamplingConfig(max_new_tokens=30, temperature=1.5, seed=7))
    again = generate(model, prompt, SamplingConfig(max_new_tokens=30, temperature=1.5, seed=7))
    other = generate(model, prompt, SamplingConfig(max_new_tokens=30, temperature=1.5, seed=8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_generation_leaves_the_global_rng_alone() -> None:
    model = tiny_model()
    torch.manual_seed(99)
    before = torch.get_rng_state()
    generate(model, prompts(2), SamplingConfig(max_new_tokens=10, temperature=1.0, seed=3))
    generate(model, prompts(2), SamplingConfig(max_new_tokens=10, temperature=1.0))
    assert torch.equal(torch.get_rng_state(), before)


def test_tiny_temperature_is_greedy_not_nan() -> None:
    model = tiny_model()
    greedy = generate(model, prompts(2), SamplingConfig(max_new_tokens=10))
    cold = generate(model, prompts(2), SamplingConfig(max_new_tokens=10, temperature=1e-30, seed=0))
    assert torch.equal(greedy, cold)


def test_diverged_model_is_a_user_error() -> None:
    model = tiny_model()
    with torch.no_grad():
        model.ln_f.weight.fill_(float("nan"))
    with pytest.raises(UserError, match="diverged"):
        generate(model, prompts(1), SamplingConfig(max_new_tokens=3))



class _RunsOutOfMemory:
    """Wraps a model's forward so that call number ``fail_at`` raises ``error``."""

    def __init__(self, model: nn.Module, fail_at: int, error: BaseException) -> None:
        self.calls = 0
        original = model.forward

        def forward(*args, **kwargs):
            self.calls += 1
            if self.calls == fail_at:
                raise error
            return original(*args, **kwargs)

        model.forward = forward


@pytest.mark.parametrize("beams", [1, 3])
@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to allocate 123"),
    ],
)
def test_out_of_memory_while_generating_is_a_user_error_and_the_model_goes_on(beams: int, error: Exception) -> None:
    model = tiny_model()
    model.train()
    want = generate(model, prompts(1), SamplingConfig(max_new_tokens=6))
    _RunsOutOfMemory(model, fail_at=3, error=error)
    sampling = SamplingConfig(max_new_tokens=6, num_beams=beams, temperature=0.0)
    with pytest.raises(UserError, match=r"Out of memory on cpu while generating\. Lower Max new tokens \(6\)") as caught:
        list(stream_generate(model, prompts(1), sampling))
    assert ("Beams (3)" in str(caught.value)) == (beams == 3)
    assert model.training  # the mode came back, as after any other ending
    # the next prompt runs as before (the forward's failing call is used up)
    assert torch.equal(generate(model, prompts(1), SamplingConfig(max_new_tokens=6)), want)


def test_other_runtime_errors_while_generating_are_not_called_out_of_memory() -> None:
    model = tiny_model()
    _RunsOutOfMemory(model, fail_at=2, error=RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        list(stream_generate(model, prompts(1), SamplingConfig(max_new_tokens=6)))


def test_out_of_memory_reaches_stream_text_as_a_user_error() -> None:
    model = tiny_model()
    assert encode("!") == [0]  # a prompt inside the tiny vocabulary
    _RunsOutOfMemory(model, fail_at=2, error=torch.cuda.OutOfMemoryError("CUDA out of memory"))
    pieces = stream_text(model, "!", SamplingConfig(max_new_tokens=5))
    with pytest.raises(UserError, match="Out of memory"):
        list(pieces)


# --- end of sequence ----------------------------------------------------------


def chain_table(vocab: int, eos: int, chain: dict[int, int]) -> torch.Tensor:
    """A bigram table where token a is followed by chain[a], and anything else by eos."""
    table = torch.full((vocab, vocab), -20.0)
    for a in range(vocab):
        table[a, chain.get(a, eos)] = 20.0
    return table


def test_eos_finishes_a_row_and_the_batch() -> None:
    eos = 9
    # Row 0 reaches eos after 2 tokens, row 1 after 4; the stream stops when both are done.
    model = BigramModel(chain_table(10, eos, {0: 1, 1: eos, 2: 3, 3: 4, 4: 5, 5: eos}))
    prompt = torch.tensor([[0], [2]])
    sampling = SamplingConfig(max_new_tokens=50, eos_id=eos)
    steps = list(stream_generate(model, prompt, sampling))
    assert [s.tolist() for s in steps] == [[1, 3], [eos, 4], [eos, 5], [eos, eos]]
    out = generate(model, prompt, sampling)
    assert out.tolist() == [[0, 1, eos, eos, eos], [2, 3, 4, 5, eos]]
    assert torch.equal(out, generate_uncached(model, prompt, sampling))
    no_eos = generate(model, prompt, sampling.with_(eos_id=None, max_new_tokens=6))
    assert no_eos.shape == (2, 7)


def test_sampled_row_stays_finished_after_eos() -> None:
    model = tiny_model()
    prompt = prompts(3)
    sampling = SamplingConfig(max_new_tokens=25, temperature=2.0, seed=4)
    eos = int(generate(model, prompt, sampling)[0, 8])  # a token row 0 is known to produce
    out = generate(model, prompt, sampling.with_(eos_id=eos))
    assert torch.equal(out, generate_uncached(model, prompt, sampling.with_(eos_id=eos)))
    assert eos in out[0, 5:].tolist()
    for row in out[:, 5:].tolist():
        if eos in row:
            first = row.index(eos)
            assert all(t == eos for t in row[first:])


# --- beam search ----------------------------------------------------------------


def naive_beam_search(model: nn.Module, prompt: torch.Tensor, beams: int, new_tokens: int) -> list[int]:
    """Beam search without eos or cache, written plainly: the reference for one row."""
    model.eval()
    context = model.config.context_length
    live: list[tuple[float, list[int]]] = [(0.0, prompt[0].tolist())]
    with torch.no_grad():
        for _ in range(new_tokens):
            grown = []
            for score, seq in live:
                logprobs = model(torch.tensor([seq[-context:]]))[0, -1].float().log_softmax(-1)
                grown += [(score + float(lp), seq + [tok]) for tok, lp in enumerate(logprobs)]
            grown.sort(key=lambda item: item[0], reverse=True)
            live = grown[:beams]
    return live[0][1]


def test_one_beam_is_greedy() -> None:
    model = tiny_model()
    prompt = prompts(3)
    greedy = generate(model, prompt, SamplingConfig(max_new_tokens=30))
    assert torch.equal(beam_search(model, prompt, num_beams=1, max_new_tokens=30), greedy)
    from gpt_tui.engine.beams import best_beams as _beam_search

    assert torch.equal(_beam_search(model, prompt, 1, 30, 1.0, None), greedy)


def test_beam_search_matches_plain_reference_past_context() -> None:
    model = tiny_model()
    prompt = prompts(2, length=6)
    out = beam_search(model, prompt, num_beams=3, max_new_tokens=CONTEXT + 4)
    assert out.shape == (2, 6 + CONTEXT + 4)
    for row in range(2):
        assert out[row].tolist() == naive_beam_search(model, prompt[row : row + 1], 3, CONTEXT + 4)


def test_beam_search_beats_greedy_where_greedy_is_short_sighted() -> None:
    # From 0: token 1 (p=.6) then a flat choice (.25 each), or token 2 (p=.4) then 3 (p=1).
    table = torch.full((4, 4), 1e-9)
    table[0] = torch.tensor([1e-9, 0.6, 0.4, 1e-9])
    table[1] = torch.tensor([0.25, 0.25, 0.25, 0.25])
    table[2, 3] = 1.0
    table[3] = 0.25
    model = BigramModel(table.log())
    prompt = torch.tensor([[0]])
    greedy = generate(model, prompt, SamplingConfig(max_new_tokens=2))
    best = beam_search(model, prompt, num_beams=2, max_new_tokens=2)
    assert greedy[0, 1] == 1
    assert best.tolist() == [[0, 2, 3]]
    assert sequence_logprob(model, prompt, best) > sequence_logprob(model, prompt, greedy) + 0.5


def test_beam_score_is_at_least_greedy_on_random_model() -> None:
    model = tiny_model(seed=3)
    for seed in range(3):
        prompt = prompts(1, seed=seed)
        greedy = generate(model, prompt, SamplingConfig(max_new_tokens=12))
        best = beam_search(model, prompt, num_beams=4, max_new_tokens=12)
        assert sequence_logprob(model, prompt, best) >= sequence_logprob(model, prompt, greedy) - 1e-4


def test_beam_search_with_eos_and_batch() -> None:
    eos = 5
    # From 0: eos now (p=.5) or 1 -> 2 -> eos (p=.45 * 1 * 1). From 3: 4 forever-ish.
    table = torch.full((6, 6), 1e-6)
    table[0, eos], table[0, 1] = 0.5, 0.45
    table[1, 2] = 1.0
    table[2, eos] = 1.0
    table[3, 4] = 1.0
    table[4, 4] = 1.0
    table[eos, eos] = 1.0
    model = BigramModel(table.log())
    prompt = torch.tensor([[0], [3]])
    # length_penalty 0: plain total log-prob, so the immediate eos (log .5) wins.
    plain = beam_search(model, prompt, num_beams=2, max_new_tokens=6, length_penalty=0.0, eos_id=eos)
    assert plain[0].tolist()[:2] == [0, eos]
    assert plain[1].tolist() == [3, 4, 4, 4, 4, 4, 4]
    # A strong length penalty favours the longer sentence: log(.45)/3**2 > log(.5)/1**2.
    long = beam_search(model, prompt, num_beams=2, max_new_tokens=6, length_penalty=2.0, eos_id=eos)
    assert long[0].tolist()[:4] == [0, 1, 2, eos]
    assert all(t == eos for t in long[0].tolist()[4:])
    single = beam_search(model, prompt[:1], num_beams=2, max_new_tokens=6, length_penalty=2.0, eos_id=eos)
    assert single[0].tolist() == long[0].tolist()[: single.shape[1]]


def test_generate_dispatches_to_beam_search_and_stream_yields_its_tokens() -> None:
    model = tiny_model()
    prompt = prompts(2)
    sampling = SamplingConfig(max_new_tokens=8, num_beams=3)
    out = generate(model, prompt, sampling)
    assert torch.equal(out, beam_search(model, prompt, 3, 8))
    streamed = torch.stack(list(stream_generate(model, prompt, sampling)), dim=1)
    assert torch.equal(streamed, out[:, 5:])


# --- streaming and mode ---------------------------------------------------------


def test_stream_yields_token_by_token_using_the_cache() -> None:
    model = ScriptedModel(script=[11, 12, 13, 14], prompt_len=3)
    stream = stream_generate(model, torch.tensor([[1, 2, 3]]), SamplingConfig(max_new_tokens=4))
    assert model.calls == []  # nothing runs before the first token is asked for
    assert next(stream).tolist() == [11]
    assert model.calls == [3]  # the prompt, prefilled once
    assert next(stream).tolist() == [12]
    assert model.calls == [3, 1]  # then one token per step
    assert [t.tolist() for t in stream] == [[13], [14]]
    assert model.calls == [3, 1, 1, 1]


@pytest.mark.parametrize("training", [True, False])
def test_closing_the_stream_early_restores_the_mode(training: bool) -> None:
    model = tiny_model()
    model.train(training)
    stream = stream_generate(model, prompts(1), SamplingConfig(max_new_tokens=20))
    next(stream)
    assert not model.training and not model.blocks[0].training
    stream.close()
    assert model.training is training and model.blocks[0].training is training
    list(stream_generate(model, prompts(1), SamplingConfig(max_new_tokens=3)))
    assert model.training is training


def test_grad_mode_is_not_held_across_yields() -> None:
    model = tiny_model()
    stream = stream_generate(model, prompts(1), SamplingConfig(max_new_tokens=5))
    next(stream)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    stream.close()


# --- text -------------------------------------------------------------------------


def scripted_text(text: str, prompt: str = "Hi", after: int = EOT_ID) -> ScriptedModel:
    return ScriptedModel(encode(text), prompt_len=len(encode(prompt)), after=after)


def test_stream_text_never_splits_a_character() -> None:
    text = "naïve café 😀 日本語 ok"
    ids = encode(text)
    from gpt_tui.engine.tokenizer import get_tokenizer

    lone = [get_tokenizer().decode_single_token_bytes(i) for i in ids]
    undecodable = 0
    for piece in lone:
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            undecodable += 1
    assert undecodable >= 3  # the premise: some tokens hold part of a character
    pieces = list(stream_text(scripted_text(text), "Hi", SamplingConfig(max_new_tokens=len(ids), eos_id=EOT_ID)))
    assert "".join(pieces) == text
    assert len(pieces) > 3
    assert all(piece and "\ufffd" not in piece for piece in pieces)


def test_stream_text_stops_at_eos_without_showing_it() -> None:
    model = scripted_text(" one two")
    sampling = SamplingConfig(max_new_tokens=30, eos_id=EOT_ID)
    assert "".join(stream_text(model, "Hi", sampling)) == " one two"
    shown = "".join(stream_text(scripted_text(" one two"), "Hi", sampling.with_(eos_id=None, max_new_tokens=3)))
    assert shown == " one two<|endoftext|>"


@pytest.mark.parametrize(
    ("text", "stops", "expected"),
    [
        (" Hello world. STOP and more", ("STOP",), " Hello world. "),
        (" Hello world.\n\nNext paragraph", ("\n\n",), " Hello world."),
        (" a STAY then STOP", ("STOP",), " a STAY then "),  # a false start is shown later
        (" a b c", ("zzz",), " a b c"),
        (" first; second", ("nope", ";"), " first"),
        (" ends with ST", ("STOP",), " ends with ST"),  # held text is flushed at the end
    ],
)
def test_stop_strings(text: str, stops: tuple[str, ...], expected: str) -> None:
    sampling = SamplingConfig(max_new_tokens=40, eos_id=EOT_ID, stop_strings=stops)
    pieces = list(stream_text(scripted_text(text), "Hi", sampling))
    assert "".join(pieces) == expected


def test_stop_string_spanning_tokens_stops_generation() -> None:
    text = " alpha beta gamma delta epsilon"
    model = scripted_text(text)
    sampling = SamplingConfig(max_new_tokens=40, eos_id=EOT_ID, stop_strings=("ta gam",))
    assert "".join(stream_text(model, "Hi", sampling)) == " alpha be"
    assert len(model.calls) < len(encode(text))  # it stopped generating, not just showing


def test_stream_text_fills_stats_and_restores_mode_when_closed() -> None:
    scripted = scripted_text(" one two three four five six")
    scripted.train()
    stats = GenerationStats()
    stream = stream_text(scripted, "Hi", SamplingConfig(max_new_tokens=20, eos_id=EOT_ID), stats)
    first = next(stream)
    assert first and not scripted.training
    stream.close()
    assert scripted.training
    assert stats.prompt_tokens == len(encode("Hi"))
    assert stats.new_tokens >= 1 and stats.time_to_first_token_s is not None
    stats = GenerationStats()
    list(stream_text(scripted_text(" one two three"), "Hi", SamplingConfig(max_new_tokens=20, eos_id=EOT_ID), stats))
    assert stats.new_tokens == len(encode(" one two three")) + 1  # the eos counts as produced
    assert stats.elapsed_s >= stats.time_to_first_token_s > 0
    assert stats.tokens_per_s > 0 and stats.decode_tokens_per_s > 0


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_empty_prompt_is_a_user_error(prompt: str) -> None:
    with pytest.raises(UserError, match="type some text"):
        stream_text(scripted_text(" x"), prompt, SamplingConfig())


def test_bad_prompt_tensors_are_user_errors() -> None:
    model = tiny_model()
    with pytest.raises(UserError, match="empty"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), SamplingConfig())
    with pytest.raises(UserError, match="vocabulary of 96"):
        generate(model, torch.tensor([[1, 500]]), SamplingConfig())
    with pytest.raises(UserError, match="integer"):
        generate(model, torch.tensor([[1.0, 2.0]]), SamplingConfig())
    one_d = generate(model, torch.tensor([1, 2, 3]), SamplingConfig(max_new_tokens=2))
    assert one_d.shape == (1, 5)


# --- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": VOCAB + 1}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_p": math.nan}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 100_001}, "max_new_tokens"),
        ({"max_new_tokens": 2.5}, "max_new_tokens"),
        ({"num_beams": 0}, "num_beams"),
        ({"num_beams": 3, "temperature": 0.7}, "deterministic"),
        ({"eos_id": VOCAB}, "eos_id"),
        ({"stop_strings": ("ok", "")}, "Stop strings"),
        ({"seed": -1}, "seed"),
        ({"length_penalty": math.inf}, "length_penalty"),
    ],
)
def test_validate_rejects_bad_settings(changes: dict, message: str) -> None:
    sampling = SamplingConfig().with_(**changes)
    with pytest.raises(UserError, match=message):
        sampling.validate(VOCAB)
    with pytest.raises(UserError, match=message):
        stream_generate(tiny_model(), prompts(1), sampling)  # checked before any token


def test_validate_accepts_edges_and_coerces_stop_strings() -> None:
    SamplingConfig(temperature=0.0, top_k=VOCAB, top_p=1.0, max_new_tokens=100_000, seed=0).validate(VOCAB)
    SamplingConfig(num_beams=4, top_k=5).validate(VOCAB)  # top-k means nothing to greedy beams
    assert SamplingConfig(stop_strings="\n\n").stop_strings == ("\n\n",)
    assert SamplingConfig(stop_strings=["a", "b"]).stop_strings == ("a", "b")  # type: ignore[arg-type]
    changed = SamplingConfig().with_(temperature=0.8)
    assert changed.temperature == 0.8 and changed.max_new_tokens == 50
