"""A Hugging Face dataset as a corpus part: ``hf:NAME[:CONFIG][@SPLIT]``, read through the ``datasets`` library.

Online, ``datasets`` downloads the split into its cache; offline
(``HF_DATASETS_OFFLINE`` or ``HF_HUB_OFFLINE`` set) it reads that cache, and a
split not there yet is one line that says how to fetch it. NAME may also be a
folder written by ``Dataset.save_to_disk``. The dataset's fingerprint, which
``datasets`` derives from its files, keys the token cache in place of file
bytes. ``datasets`` is the ``data`` extra, imported only here.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from gpt_tui.engine.corpus_part import HF_PREFIX, CorpusPart
from gpt_tui.errors import UserError
from gpt_tui.extras import require
from gpt_tui.textsafe import visible

DEFAULT_SPLIT = "train"
_OFFLINE_VARIABLES = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
_BATCH_ROWS = 1024


class HfName(NamedTuple):
    name: str
    config: str | None
    split: str


def parse_hf(source: str) -> HfName:
    """``hf:NAME[:CONFIG][@SPLIT]`` split into its parts (the split defaults to train)."""
    body = source.removeprefix(HF_PREFIX)
    body, at, split = body.partition("@")
    name, colon, config = body.partition(":")
    if not name or (colon and not config) or (at and not split):
        raise UserError(
            f"{visible(source)} is not a dataset name; write hf:NAME, hf:NAME:CONFIG, hf:NAME@SPLIT "
            "or hf:NAME:CONFIG@SPLIT (e.g. hf:roneneldan/TinyStories@validation)."
        )
    return HfName(name, config or None, split or DEFAULT_SPLIT)


def offline() -> bool:
    return any(os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE") for v in _OFFLINE_VARIABLES)


def hf_part(source: str, text_field: str) -> CorpusPart:
    """The part for a dataset split, once it is loaded and known to have the text column."""
    dataset = load_hf_split(source)
    columns = list(dataset.column_names)
    if text_field not in columns:
        raise UserError(
            f'{visible(source)} has no column "{visible(text_field)}"; its columns are '
            f"{', '.join(visible(c) for c in columns) or 'none'}. Choose one with --text-field."
        )
    return CorpusPart(source, "hf", None, text_field, identity=f"hf-{dataset._fingerprint}", size_bytes=_nbytes(dataset))


def hf_documents(part: CorpusPart) -> Iterator[str]:
    """The split's text column, row by row; a row with no text is an error that names it."""
    dataset = load_hf_split(part.label)
    row = 0
    for start in range(0, len(dataset), _BATCH_ROWS):
        for value in dataset[start : start + _BATCH_ROWS][part.text_field]:
            row += 1
            if value is None or not isinstance(value, str):
                raise UserError(
                    f'{visible(part.label)} row {row}: column "{visible(part.text_field)}" holds '
                    f"{'nothing' if value is None else type(value).__name__}, not text."
                )
            if value:
                yield value


def _nbytes(dataset: Any) -> int:
    try:
        return int(dataset.data.nbytes)
    except (AttributeError, TypeError, ValueError):
        return 0


@functools.lru_cache(maxsize=8)
def load_hf_split(source: str) -> Any:
    """The split as a ``datasets.Dataset`` (memory-mapped Arrow files: cheap to keep)."""
    spec = parse_hf(source)
    datasets = require("datasets", "data", f"The dataset {visible(source)}")
    datasets.utils.logging.set_verbosity_error()  # its "using the cached version" lines are not the user's business
    datasets.disable_progress_bars()
    local = Path(spec.name).expanduser()
    try:
        if (local / "state.json").is_file() or (local / "dataset_dict.json").is_file():
            loaded = datasets.load_from_disk(str(local))
            return loaded[spec.split] if isinstance(loaded, datasets.DatasetDict) else loaded
        return datasets.load_dataset(spec.name, spec.config, split=spec.split)
    except KeyError:
        raise UserError(f"{visible(source)}: the saved dataset has no split {visible(spec.split)!r}.") from None
    except ValueError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if offline() and "cache" in first.lower():
            raise _not_cached(source, spec) from None
        raise UserError(f"Cannot load {visible(source)}: {visible(first)}") from None
    except Exception as exc:  # datasets raises ConnectionError, FileNotFoundError and its own kinds for one cause
        if offline():
            raise _not_cached(source, spec) from None
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"Cannot load {visible(source)}: {visible(first)}. Check the name on huggingface.co/datasets "
            "and the network."
        ) from None


def _not_cached(source: str, spec: HfName) -> UserError:
    fetch = f"datasets.load_dataset('{spec.name}'" + (f", '{spec.config}'" if spec.config else "") + ")"
    return UserError(
        f"{visible(source)} is not in the local dataset cache and downloads are off "
        f"({' or '.join(_OFFLINE_VARIABLES)} is set); fetch it once with the network on: unset them and run "
        f'the same command again, or python -c "import datasets; {visible(fetch)}".'
    )
