"""Deterministic English-like text that tests write to disk as a corpus."""

from __future__ import annotations

import random

WORDS = (
    "the painter looked at the picture and said that every effort moves you closer to the light "
    "of the morning while the river runs past the old house where nobody had lived for years "
    "she smiled and put the brush down because the work was done and the evening was quiet"
).split()


def sample_text(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    sentences = []
    while sum(len(s.split()) for s in sentences) < n_words:
        length = rng.randint(6, 14)
        sentence = " ".join(rng.choice(WORDS) for _ in range(length))
        sentences.append(sentence.capitalize() + ".")
    return " ".join(sentences) + "\n"
