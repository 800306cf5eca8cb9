"""The book's data for chapter 5: a character split, each half tokenized, and torch DataLoaders over its windows.

gpt-tui's own pipeline splits the token array and shuffles from (seed, epoch)
with numpy, so a run can resume at any batch. The book splits the text at
``int(train_ratio * len(text))`` characters, tokenizes each half, and shuffles
with ``DataLoader(shuffle=True)``, which draws its seeds from torch's global
generator each time the loader is iterated (an evaluation over the training
loader included). Using torch's own DataLoader here keeps those draws the
book's, in number and in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch.utils.data import DataLoader

from gpt_tui.engine.batches import TokenWindows
from gpt_tui.engine.corpus import read_corpus
from gpt_tui.engine.tokenizer import encode
from gpt_tui.engine.train_options import TrainConfig
from gpt_tui.errors import UserError


@dataclass
class BookData:
    train: DataLoader
    val: DataLoader

    @property
    def train_tokens(self) -> int:
        """Tokens one epoch trains on, as the book counts them (whole batches only)."""
        return len(self.train) * self.train.batch_size * self.train.dataset.context_length

    @property
    def val_tokens(self) -> int:
        return len(self.val.dataset) * self.val.dataset.context_length


def split_text(text: str, train_ratio: float) -> tuple[str, str]:
    """The book's split: the first ``train_ratio`` of the characters train, the rest validate."""
    cut = int(train_ratio * len(text))
    return text[:cut], text[cut:]


def windows_of(text: str, context_length: int, stride: int) -> TokenWindows:
    return TokenWindows(np.asarray(encode(text), dtype=np.int64), context_length, stride)


def _one_source(config: TrainConfig) -> str | None:
    """The one text file the book trains on (None: the built-in corpus)."""
    data = config.data
    sources = (data,) if isinstance(data, str) else tuple(data or ())
    if len(sources) > 1 or getattr(config, "val_data", None):
        raise UserError(
            "--recipe book trains on one text file split by characters, as the book does; give one --data file "
            "and no --val-data, or use --recipe gpt-tui for several sources."
        )
    return sources[0] if sources else None


def book_data(config: TrainConfig) -> BookData:
    """Loaders as the book's ``create_dataloader_v1`` makes them: training shuffled, whole batches; validation in order."""
    assert config.context_length is not None
    train_text, val_text = split_text(read_corpus(_one_source(config)), config.train_ratio)
    stride = config.stride or config.context_length
    train = windows_of(train_text, config.context_length, stride)
    val = windows_of(val_text, config.context_length, stride)
    if len(train) < config.batch_size:
        raise UserError(
            f"The training text gives {len(train)} windows of {config.context_length} tokens, fewer than one batch of "
            f"{config.batch_size}; use a longer text, a smaller --batch-size or a shorter --context-length."
        )
    return BookData(
        train=DataLoader(train, batch_size=config.batch_size, shuffle=True, drop_last=True, num_workers=0),
        val=DataLoader(val, batch_size=config.batch_size, shuffle=False, drop_last=False, num_workers=0),
    )
