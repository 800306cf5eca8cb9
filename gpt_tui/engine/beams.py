"""Beam search: keep the ``num_beams`` most probable partial sequences of each row.

Beams are ranked by total log-probability; a finished hypothesis (one that
ends in ``eos_id``, or a live beam when the tokens run out) is scored
``sum_logprob / new_tokens ** length_penalty``. The search is deterministic,
which is why a sampling temperature is refused with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from gpt_tui.engine.decoding import ModelWindow
from gpt_tui.engine.sampling import check_finite
from gpt_tui.engine.sampling_config import SamplingConfig


@dataclass
class Hypotheses:
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


def best_beams(
    model: nn.Module,
    ids: torch.Tensor,
    num_beams: int,
    max_new_tokens: int,
    length_penalty: float,
    eos_id: int | None,
) -> torch.Tensor:
    """The prompt ``ids`` (already checked) and each row's best continuation, ``(B, T + new)``."""
    batch, k = ids.shape[0], num_beams
    device = ids.device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            runner = ModelWindow(model, batch)
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
            hypotheses = [Hypotheses(k) for _ in range(batch)]
            done = [False] * batch

            for step in range(max_new_tokens):
                logits = logits.float()
                check_finite(logits)
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
                    done[row] = row_done(
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


def row_done(
    hypotheses: Hypotheses, best_live: float, length: int, max_new_tokens: int, length_penalty: float
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


def stream_beams(model: nn.Module, ids: torch.Tensor, sampling: SamplingConfig) -> Iterator[torch.Tensor]:
    """The best beams' new tokens ``(B,)`` column by column, once the whole search is done."""
    out = best_beams(model, ids, sampling.num_beams, sampling.max_new_tokens, sampling.length_penalty, sampling.eos_id)
    for column in range(ids.shape[1], out.shape[1]):
        yield out[:, column]
