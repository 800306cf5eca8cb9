"""Reading a corpus part's documents: a text file is one, each JSON record, table row or dataset row another.

Records are read one at a time (a JSON array excepted, which ``json`` reads
whole), so memory stays bounded by one record. A record the reader cannot use
is a ``UserError`` that names the file and the line, item or row, so the user
can find it; records whose text is empty are left out, having no tokens.
pyarrow (CSV, Parquet) and ``datasets`` (hf:) are the ``data`` extra, imported
only here, when such a part is read.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from gpt_tui.engine import corpus
from gpt_tui.engine.corpus_part import CorpusPart
from gpt_tui.errors import UserError
from gpt_tui.extras import require
from gpt_tui.textsafe import visible

_BATCH_ROWS = 1024  # table rows decoded at a time


def read_documents(part: CorpusPart) -> Iterator[str]:
    """Each document of ``part`` in order."""
    if part.kind == "text":
        yield corpus.default_corpus_text() if part.path is None else corpus.read_corpus(str(part.path))
    elif part.kind == "jsonl":
        yield from _jsonl(part)
    elif part.kind == "json":
        yield from _json_array(part)
    elif part.kind in ("csv", "parquet"):
        yield from _table(part)
    elif part.kind == "hf":
        from gpt_tui.engine.hf_source import hf_documents

        yield from hf_documents(part)
    else:
        raise ValueError(f"unknown corpus part kind {part.kind!r}")


def _field_text(part: CorpusPart, record: Any, where: str) -> str:
    """The text of one JSON record, or a UserError that says where it is and what it holds instead."""
    field = part.text_field
    if not isinstance(record, dict):
        raise UserError(
            f"{visible(part.label)} {where} is a JSON {type(record).__name__}, not an object with a "
            f'"{visible(field)}" field; each record must look like {{"{visible(field)}": "..."}}.'
        )
    if field not in record:
        keys = ", ".join(visible(k) for k in list(record)[:10]) or "none"
        raise UserError(
            f'{visible(part.label)} {where} has no "{visible(field)}" field (its fields: {keys}); '
            "choose the field that holds the text with --text-field."
        )
    text = record[field]
    if not isinstance(text, str):
        raise UserError(
            f'{visible(part.label)} {where}: "{visible(field)}" holds a JSON {type(text).__name__}, not text.'
        )
    return text


def _jsonl(part: CorpusPart) -> Iterator[str]:
    assert part.path is not None
    offset = 0
    with corpus.open_corpus(part.path, part.label) as stream:
        for number, raw in enumerate(stream, start=1):
            line = raw[len(corpus.UTF8_BOM) :] if number == 1 and raw.startswith(corpus.UTF8_BOM) else raw
            try:
                decoded = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(
                    f"{visible(part.label)} line {number} is not UTF-8 (invalid byte at byte offset "
                    f"{offset + len(raw) - len(line) + exc.start}); re-encode the file to UTF-8."
                ) from None
            offset += len(raw)
            if not decoded.strip():
                continue
            try:
                record = json.loads(decoded)
            except json.JSONDecodeError as exc:
                raise UserError(
                    f"{visible(part.label)} line {number} is not JSON ({exc.msg} at column {exc.colno}); "
                    "a JSON Lines file holds one JSON object per line."
                ) from None
            text = _field_text(part, record, f"line {number}")
            if text:
                yield text


def _json_array(part: CorpusPart) -> Iterator[str]:
    assert part.path is not None
    with corpus.open_corpus(part.path, part.label) as stream:
        data = stream.read()
    offset = len(corpus.UTF8_BOM) if data.startswith(corpus.UTF8_BOM) else 0
    text = corpus.decode_utf8(data[offset:], source=part.label, offset=offset)
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{visible(part.label)} line {exc.lineno} is not JSON ({exc.msg} at column {exc.colno}); "
            "a .json corpus holds one array of objects (use .jsonl for one object per line)."
        ) from None
    if not isinstance(records, list):
        raise UserError(
            f"{visible(part.label)} holds a JSON {type(records).__name__}, not an array of records; "
            f'give [{{"{visible(part.text_field)}": "..."}}, ...], or one object per line in a .jsonl file.'
        )
    for number, record in enumerate(records, start=1):
        document = _field_text(part, record, f"item {number}")
        if document:
            yield document


def _table(part: CorpusPart) -> Iterator[str]:
    """The text column of a CSV or Parquet file, a batch of rows at a time."""
    assert part.path is not None
    pa = require("pyarrow", "data", f"Reading {visible(part.label)}")
    try:
        batches, columns = _open_table(part)
        if part.text_field not in columns:
            raise UserError(
                f'{visible(part.label)} has no column "{visible(part.text_field)}"; its columns are '
                f"{', '.join(visible(c) for c in columns) or 'none'}. Choose one with --text-field."
            )
        row = 0
        for batch in batches:
            for value in batch.column(part.text_field).cast(pa.string()).to_pylist():
                row += 1
                if value is None:
                    raise UserError(
                        f'{visible(part.label)} row {row} has no value in column "{visible(part.text_field)}"; '
                        "fill it in or remove the row."
                    )
                if value:
                    yield value
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"Cannot read {visible(part.label)}: {visible(str(exc).splitlines()[0] if str(exc) else exc)}.") from None


def _open_table(part: CorpusPart) -> tuple[Iterator[Any], list[str]]:
    """Record batches holding the text column, and every column's name (for the message when it is missing)."""
    assert part.path is not None
    if part.kind == "parquet":
        pq = require("pyarrow.parquet", "data", f"Reading {visible(part.label)}")
        table = pq.ParquetFile(part.path)
        columns = list(table.schema_arrow.names)
        if part.text_field not in columns:
            return iter(()), columns
        return table.iter_batches(batch_size=_BATCH_ROWS, columns=[part.text_field]), columns
    csv = require("pyarrow.csv", "data", f"Reading {visible(part.label)}")
    reader = csv.open_csv(part.path)
    return iter(reader), list(reader.schema.names)
