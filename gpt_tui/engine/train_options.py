"""What a training run is asked to do: the one set of defaults the CLI, the app and detached runs share.

Kept free of torch so the app can read the defaults for its settings panel
without paying for torch in its first frame; the trainer re-exports it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from gpt_tui.engine.options import Rule, check_all, check_rules, flags_for, option, options_of
from gpt_tui.engine.presets import MAX_CONTEXT, PRESET_NAMES, resolve_preset
from gpt_tui.engine.sampling_config import MAX_NEW_TOKENS
from gpt_tui.engine.runs import TENSORBOARD_SUBDIR
from gpt_tui.errors import UserError
from gpt_tui.extras import available, install_hint, missing

if TYPE_CHECKING:
    from gpt_tui.engine.model import GPTConfig


def _check_device(value: str) -> None:
    name = value.strip().lower()
    if name in ("auto", "cpu", "cuda", "mps") or (name.startswith("cuda:") and name[5:].isdigit()):
        return
    raise UserError(f"Unknown device {value!r}; use auto, cpu, cuda, cuda:N or mps.")


def _check_model(value: str) -> None:
    resolve_preset(value)


def _check_tensorboard(value: bool) -> None:
    if value and not available("tensorboard"):  # said before a run starts (or detaches), not at its first step
        raise missing("tensorboard", "tensorboard", "--tensorboard")


def _check_text_field(value: str) -> None:
    if not value.strip():
        raise UserError("text-field must name the JSON key or column that holds the text, e.g. --text-field text.")


MAX_SEED = 2**63 - 1
SAMPLINGS = ("windows", "random")  # the book's sliding windows, or random windows from the whole stream
RECIPES = ("gpt-tui", "book")


@dataclass
class TrainConfig:
    """Each field declares its option once (gpt_tui.engine.options); the form lists the labelled ones in this order."""

    device: str = option(
        "auto", str, "auto, cpu, cuda, cuda:N or mps", check=_check_device,
        label="Device", form_help="auto picks cuda, then mps, then cpu",
    )
    model: str = option(
        "tiny", str, "model preset: tiny, mini, gpt2-small (gpt2, 124M), gpt2-medium, gpt2-large, gpt2-xl",
        check=_check_model, label="Model preset", form_choices=PRESET_NAMES,
    )
    data: tuple[str, ...] | None = option(  # None: the built-in corpus; a lone str (older configs) is one source
        None, str, "what to train on, repeatable: a UTF-8 text file, a folder (recursive), a glob, a .jsonl/.json/"
        ".csv/.parquet file or hf:NAME[:CONFIG][@SPLIT] (default: the built-in corpus)", optional=True,
        repeatable=True, label="Corpus",
        form_help="files, folders, globs or hf:NAME (; between them); empty: built-in docs",
        placeholder="built-in: python-docs",
    )
    val_data: tuple[str, ...] | None = option(  # None: the ratio split of --data
        None, str, "held-out validation set (the same kinds of source as --data, repeatable) instead of the "
        "--train-ratio split", optional=True, repeatable=True,
    )
    glob: str | None = option(
        None, str, "which files of a --data folder to read, e.g. '*.jsonl' (default: *.txt, *.md and *.text)",
        optional=True,
    )
    text_field: str = option(
        "text", str, "the JSON key or CSV/Parquet/dataset column that holds the text", check=_check_text_field,
    )
    skip_bad_files: bool = option(
        False, bool, "leave out the files of a folder or glob that are not UTF-8 text (default: name them and stop)",
    )
    context_length: int | None = option(  # None: the preset's
        None, int, "tokens per training window (at most the model's context)", optional=True, minimum=1,
        maximum=MAX_CONTEXT, label="Context length", form_help="tokens per window; off: the preset's",
        refusal=f"context_length {{value}} is outside 1..{MAX_CONTEXT}, the most GPT-2's position table allows.",
    )
    stride: int | None = option(  # None: context_length (windows do not overlap)
        None, int, "tokens between window starts (default: context length)", optional=True, minimum=1,
    )
    sampling: str = option(
        "windows", str, "how training batches are drawn: windows (the book's sliding windows, shuffled each epoch) "
        "or random (windows starting anywhere in the training tokens; an epoch is train tokens // (batch * context))",
        choices=SAMPLINGS,
    )
    batch_size: int = option(8, int, "windows per batch", minimum=1, label="Batch size")
    # the book's count; one epoch of the tiny model on the built-in corpus is ~120 steps
    epochs: int = option(10, int, "passes over the training split", minimum=1, label="Epochs")
    max_steps: int | None = option(
        None, int, "optimizer steps to run (overrides --epochs)", optional=True, minimum=1,
        label="Max steps", form_help="overrides epochs; off: run all epochs",
    )
    lr: float = option(4e-4, float, "peak learning rate", above=0, label="Learning rate")
    min_lr: float | None = option(  # None: lr (no decay, as in the book)
        None, float, "learning rate at the end of the cosine decay (default: --lr, no decay)", optional=True,
        minimum=0, label="Min learning rate", form_help="cosine decay floor; off: constant lr", example="4e-5",
    )
    warmup_steps: int = option(0, int, "steps of linear warmup", minimum=0, label="Warmup steps")
    weight_decay: float = option(0.1, float, "AdamW weight decay", minimum=0, label="Weight decay")
    beta1: float = option(0.9, float, "AdamW beta1 (first-moment decay)", minimum=0, below=1, label="Adam beta1")
    beta2: float = option(0.999, float, "AdamW beta2 (second-moment decay)", minimum=0, below=1, label="Adam beta2")
    grad_clip: float | None = option(  # None or 0: no clipping
        1.0, float, "clip the global gradient norm to this (0: off)", optional=True, minimum=0, off_flag="0",
        label="Gradient clip", form_help="max global norm; off: no clipping",
        refusal="grad-clip must be a finite number of 0 or more, got {value}; use 0 to switch clipping off.",
    )
    grad_accum: int = option(1, int, "micro-batches per optimizer step", minimum=1, label="Grad accumulation")
    eval_freq: int | None = option(  # None: 5, or less often for a large default evaluation (engine.eval_coverage)
        None, int, "evaluate every N steps (default: 5, or less often when the default evaluation of a large corpus "
        "would otherwise take over a quarter of the time)", optional=True, minimum=1,
        label="Eval every (steps)", form_help="auto: 5, or less often on a large corpus", placeholder="auto",
    )
    eval_iter: int | None = option(  # None: the whole split, or a fixed sample of a large one (engine.eval_coverage)
        None, int, "batches per evaluation, the first N of each split (default: the whole split, or a fixed "
        "seeded sample of a large one, within 0.05 of its loss)", optional=True, minimum=1,
        label="Eval batches", form_help="first N batches; auto: whole split or a fixed sample", placeholder="auto",
    )
    early_stop: int | None = option(  # None: off (gpt_tui.engine.early_stop)
        None, int, "stop after N evaluations in a row without a lower val loss (default: off)", optional=True,
        minimum=1, label="Early stop", form_help="evaluations without improvement; off: never",
    )
    train_ratio: float = option(
        0.9, float, "share of the tokens used for training", above=0, below=1, label="Train ratio",
    )
    start_context: str = option(
        "Every effort moves you", str, "prompt for the sample printed after each epoch",
        label="Start context", form_help="prompt for the sample after each epoch",
    )
    sample_tokens: int = option(
        50, int, "tokens in each epoch's sample", minimum=0, maximum=MAX_NEW_TOKENS, label="Sample tokens",
        refusal=f"sample-tokens must be from 0 to {MAX_NEW_TOKENS:,} (the generation limit), got {{value}}; "
        "use a smaller --sample-tokens, or 0 for no samples.",
    )
    seed: int = option(123, int, "random seed", minimum=0, maximum=MAX_SEED, label="Seed")
    checkpoint_every: int = option(  # steps between periodic checkpoints; 0: no step bound
        0, int, "also save every N steps (default 0: by time only; a final checkpoint is always saved)", minimum=0,
        label="Checkpoint every", form_help="steps; 0: by time only",
    )
    checkpoint_minutes: float = option(  # also save once this long has passed since the last save; 0: no time bound
        10.0, float, "save once this many minutes passed since the last checkpoint (default 10; 0: off)", minimum=0,
        label="Checkpoint minutes", form_help="at most this much training lost to a crash; 0: off",
        refusal="checkpoint-minutes must be 0 (no time bound) or more, got {value}.",
    )
    precision: str = option(
        "auto", str, "auto, fp32 or bf16", choices=("auto", "fp32", "bf16"),
        label="Precision", form_help="auto: bf16 where the hardware is fast at it",
    )
    run_dir: str | None = option(
        None, str, "where to write config, metrics and checkpoints: a new or unused folder, unless resuming the run "
        "there (default: a new run under the user data dir)", optional=True,
    )
    # the run that owns run_dir (gpt_tui.engine.ownership); set by the --detach launcher that made --run-dir
    run_id: str | None = option(None, str, optional=True, hidden=True)
    drop_rate: float | None = option(  # None: the preset's, or by the --init-from rule (engine.train_start)
        None, float, "dropout rate (default: the preset's; with --init-from, a gpt-tui checkpoint's own, 0.0 for "
        "other weights, and the book's 0.1 with --recipe book)", optional=True, minimum=0, below=1,
    )
    recipe: str = option(  # "book": chapter 5's train_model_simple draw for draw (gpt_tui.engine.book_recipe)
        "gpt-tui", str, "gpt-tui (clipping, warmup and decay options, resumable anywhere) or book (chapter 5's "
        "notebook run exactly: its draws, split, AdamW on all parameters, no clipping, its log)",
        choices=RECIPES, label="Recipe", form_help="book: the chapter-5 notebook's run, draw for draw",
    )
    init: str = option(  # fresh weights: "book" (PyTorch defaults, as chapter 5) or "gpt2" (N(0, 0.02))
        "book", str, "fresh weights: book (PyTorch defaults, as in chapter 5; the default) or gpt2 (N(0, 0.02))",
        choices=("book", "gpt2"),
    )
    compile: bool = option(  # torch.compile the training step (pays off on GPUs for long runs)
        False, bool, "torch.compile the training step (a minute to compile; pays off on GPUs for long runs)",
    )
    tensorboard: bool = option(  # off by default: TensorBoard is an optional extra
        False, bool, f"also log TensorBoard event files into the run directory's {TENSORBOARD_SUBDIR}/ "
        f'(needs {install_hint("tensorboard")})', check=_check_tensorboard,
    )

    def validate(self) -> None:
        check_all(self)
        check_rules(self, TRAIN_RULES)

    def model_config(self) -> "GPTConfig":
        from gpt_tui.engine.model import get_preset  # torch: only where a model is built

        return get_preset(self.model, context_length=self.context_length, drop_rate=self.drop_rate)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        several = {opt.name for opt in options_of(cls) if opt.repeatable}
        return cls(**{k: tuple(v) if k in several and isinstance(v, list) else v for k, v in data.items() if k in known})


def _min_lr_at_most_lr(config: Any) -> str | None:
    if config.min_lr is not None and config.min_lr > config.lr:
        return f"min-lr must be between 0 and lr ({config.lr}), got {config.min_lr}."
    return None


# Rules that tie two options together; the app phrases them with its labels.
TRAIN_RULES: tuple[Rule, ...] = (
    Rule(("min_lr", "lr"), _min_lr_at_most_lr,
         "Min learning rate ({min_lr:g}) must not exceed the learning rate ({lr:g})."),
)


def train_argv(values: dict[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    """``gpt-tui train`` flags that give a run these TrainConfig values: a detached run's, the app's background run's."""
    return flags_for(values, TrainConfig, skip)
