"""How much of a split an evaluation reads by default, and how that is said.

A loss over a couple of batches is a guess that can sit far from the split's
own loss, and nothing on screen said so. So by default an evaluation reads
the whole split when that is cheap, and otherwise a fixed sample of windows
large enough to land within 0.05 of the whole split's loss. ``--eval-iter N``
keeps the book's meaning (the first N batches); gpt_tui.engine.evaluation
picks the windows and scores them.

The sizes come from measurement. The loss varies a lot from one window to
the next: a standard deviation of 1.7-1.8 per 128-token window for the tiny
model after 200 steps, on the built-in corpus (code, tables and prose) and on
100 MB of docstrings. The mean of K windows then strays from the whole
split's by about 1.7 / sqrt(K), so K = 8192 windows of 128 tokens (1M
tokens) keeps it within 0.05 in 99% of draws there, and far more surely on
more uniform text. The sample is stratified, one window from each of K equal
stretches of the split, which strays less than a plain random one because
neighbouring windows are alike; it is drawn once from the run's seed, so
every evaluation reads the same windows and they compare. The whole split is
read instead when the sample would be nearly as large, or when the split is
no more than the run trains on between two evaluations anyway.

Torch-free and numpy-free: the CLI, the app and ``gpt-tui runs`` say the
coverage from here without loading either.
"""

from __future__ import annotations

import math

SAMPLE_TOKENS = 1 << 20  # predictions a sample scores; fewer windows are needed when each is longer
MIN_SAMPLE_WINDOWS = 1024  # however long the windows, at least this many: the loss varies from text to text
BOOK_EVAL_FREQ = 5  # the chapter-5 interval: the default while evaluations are cheap
EVAL_TIME_SHARE = 0.25  # by default evaluating costs at most about this share of the training between two
# Windows scored in the time one is trained (forward only, no backward or update): 2.4 measured for the
# tiny preset at context 128 on one CPU thread (1.14 s a training step of 8 windows, 0.48 s to score 8).
SCORED_PER_TRAINED = 2.4
WHOLE_SPLIT_SHARE = 1.0  # read the whole split when it is at most this share of the windows trained between evaluations


def sample_windows(context_length: int) -> int:
    """Windows in the default sample of a split with windows of ``context_length`` tokens."""
    return max(MIN_SAMPLE_WINDOWS, math.ceil(SAMPLE_TOKENS / max(1, context_length)))


def default_sample_size(num_windows: int, context_length: int, windows_between: int) -> int | None:
    """How many windows a default evaluation of the validation split samples; None: the whole split.

    ``windows_between`` is how many windows the run trains on between two
    evaluations: a split no larger than that costs less to read whole than
    the training it follows, so it is read whole.
    """
    size = sample_windows(context_length)
    if num_windows <= size * 1.25 or num_windows <= WHOLE_SPLIT_SHARE * windows_between:
        return None
    return size


def default_sizes(
    train_windows: int, val_windows: int, context_length: int, windows_between: int
) -> tuple[int | None, int | None]:
    """(train, validation) windows a default evaluation samples, None where it reads the whole split.

    The training split's estimate reads as many windows as the validation
    split's, so the two are as precise as each other and their gap means
    something, at twice the cost of one, not the cost of the (larger) split.
    """
    val = default_sample_size(val_windows, context_length, windows_between)
    read = val if val is not None else val_windows
    whole_train = train_windows <= max(read, WHOLE_SPLIT_SHARE * windows_between)
    return (None if whole_train else read), val


def default_interval(windows_read: int, windows_per_step: int) -> int:
    """Steps between default evaluations: the book's 5, or more when one evaluation reads that much more.

    An honest evaluation of a large corpus reads about a million tokens; at
    the book's every-5-steps that is most of a run's time, so the interval
    grows until evaluating costs about EVAL_TIME_SHARE of the training.
    """
    trained_equivalent = windows_read / SCORED_PER_TRAINED
    return max(BOOK_EVAL_FREQ, math.ceil(trained_equivalent / (EVAL_TIME_SHARE * max(1, windows_per_step))))


def format_tokens(count: int, exact: bool = False) -> str:
    """A token count for a line of text: 13,824 exactly, or 13.8k / 2.5M at a glance."""
    if exact or count < 10_000:
        return f"{count:,}"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= limit:
            return f"{count / limit:.1f}{suffix}"
    return f"{count:,}"


def coverage_text(tokens: int, split_tokens: int, exact: bool = False) -> str:
    """What an evaluation of one split read: "13.8k tokens, whole split" or "65.5k of 2.5M tokens".

    Empty for a record written before evaluations counted their tokens.
    """
    if tokens <= 0 or split_tokens <= 0:
        return ""
    if tokens >= split_tokens:
        return f"{format_tokens(split_tokens, exact)} tokens, whole split"
    return f"{format_tokens(tokens, exact)} of {format_tokens(split_tokens, exact)} tokens"


def loss_with_coverage(loss: float, tokens: int, split_tokens: int) -> str:
    """``3.324 (13.8k tokens, whole split)``: a split's evaluated loss and what it read, for a log line."""
    text = coverage_text(tokens, split_tokens)
    return f"{loss:.3f} ({text})" if text else f"{loss:.3f}"
