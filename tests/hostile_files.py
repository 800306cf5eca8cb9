"""Crafted weight files for the hostile-input tests: checkpoints, configs, TensorFlow indexes, zips.

Each helper writes a small file that claims something untrue (a huge tensor,
a million layers, a shard elsewhere) from a valid one, so the tests can show
the loaders refuse it cheaply with one clear line.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from gpt_tui.engine.crc32c import crc32c

FIXTURES = Path(__file__).parent / "fixtures"
TF_FIXTURE = FIXTURES / "tf_gpt2_tiny"
HF_FIXTURE = FIXTURES / "tf_gpt2_tiny_hf"
TABLE_MAGIC = 0xDB4775248B80FB57


# ---------------------------------------------------------------------------
# gpt-tui checkpoints: the header and the tensors, each rewritten at will.


def read_checkpoint(path: Path) -> tuple[Any, dict[str, torch.Tensor]]:
    with safe_open(str(path), framework="pt") as fh:
        header = json.loads((fh.metadata() or {})["gpt_tui"])
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    return header, tensors


def write_checkpoint(path: Path, header: Any, tensors: dict[str, torch.Tensor]) -> Path:
    save_file(tensors, str(path), metadata={"gpt_tui": json.dumps(header)})
    return path


def rewrite_checkpoint(
    src: Path,
    dst: Path,
    header: Callable[[Any], Any] = lambda h: h,
    tensors: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] = lambda t: t,
) -> Path:
    old_header, old_tensors = read_checkpoint(src)
    return write_checkpoint(dst, header(old_header), tensors(old_tensors))


def edit(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A header rewrite that sets dotted keys (``config.n_heads``); the value ``DELETE`` removes one."""
    def apply(header: dict[str, Any]) -> dict[str, Any]:
        for dotted, value in changes.items():
            *parents, leaf = dotted.split("__")
            target = header
            for key in parents:
                target = target[int(key)] if isinstance(target, list) else target[key]
            if value is DELETE:
                del target[leaf]
            else:
                target[leaf] = value
        return header
    return apply


DELETE = object()


# ---------------------------------------------------------------------------
# JSON configs written as text, so that 1e400 and NaN reach the reader as such.


def hf_folder(tmp: Path, name: str = "hf", config_text: str | None = None, **changes: Any) -> Path:
    folder = tmp / name
    shutil.copytree(HF_FIXTURE, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(config_text if config_text is not None else json.dumps(config))
    return folder


def tf_folder(tmp: Path, name: str = "tf", hparams_text: str | None = None, **changes: Any) -> Path:
    folder = tmp / name
    shutil.copytree(TF_FIXTURE, folder)
    hparams = json.loads((folder / "hparams.json").read_text())
    hparams.update(changes)
    (folder / "hparams.json").write_text(hparams_text if hparams_text is not None else json.dumps(hparams))
    return folder


def raw_json(base: dict[str, Any], **literals: str) -> str:
    """``base`` as JSON with some values replaced by literal text (``1e400``, ``NaN``)."""
    text = json.dumps({**base, **{k: f"@@{k}@@" for k in literals}})
    for key, literal in literals.items():
        text = text.replace(f'"@@{key}@@"', literal)
    return text


# ---------------------------------------------------------------------------
# TensorFlow tensor-bundle indexes, written by hand (LevelDB table, BundleEntryProto).


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, bytes):
        return _varint(number << 3 | 2) + _varint(len(value)) + value
    return _varint(number << 3) + _varint(value)


def _masked(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tf_entry(dtype: int, shape: list[int], offset: int, size: int, crc_of: bytes | None = None) -> bytes:
    dims = b"".join(_field(2, _field(1, d)) for d in shape)
    entry = _field(1, dtype) + _field(2, dims) + _field(4, offset) + _field(5, size)
    if crc_of is not None:
        entry += _varint(6 << 3 | 5) + struct.pack("<I", _masked(crc_of))
    return entry


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(_varint(0) + _varint(len(k)) + _varint(len(v)) + k + v for k, v in entries)
    return body + struct.pack("<II", 0, 1)  # one restart point at 0, then the count


def tf_index(entries: list[tuple[bytes, bytes]], handle_copies: int = 1) -> bytes:
    """A table of one data block holding the bundle header then ``entries``; the index lists that block
    ``handle_copies`` times (a well-formed table lists each block once)."""
    out = bytearray()

    def put(block: bytes) -> tuple[int, int]:
        offset = len(out)
        out.extend(block + b"\x00" + struct.pack("<I", _masked(block + b"\x00")))
        return offset, len(block)

    data = put(_block([(b"", _field(1, 1))] + entries))
    meta = put(_block([]))
    handle = _varint(data[0]) + _varint(data[1])
    index = put(_block([(b"\xff" * 4 + struct.pack(">I", i), handle) for i in range(handle_copies)]))
    footer = (_varint(meta[0]) + _varint(meta[1]) + _varint(index[0]) + _varint(index[1])).ljust(40, b"\x00")
    out.extend(footer + struct.pack("<Q", TABLE_MAGIC))
    return bytes(out)


def tf_bundle(tmp: Path, entries: list[tuple[bytes, bytes]], data: bytes = b"\x00" * 16, handle_copies: int = 1,
              name: str = "tfx") -> Path:
    """A TensorFlow folder (the fixture's hparams.json) whose index holds ``entries``."""
    folder = tmp / name
    folder.mkdir()
    shutil.copy(TF_FIXTURE / "hparams.json", folder / "hparams.json")
    (folder / "model.ckpt.index").write_bytes(tf_index(entries, handle_copies))
    (folder / "model.ckpt.data-00000-of-00001").write_bytes(data)
    return folder


# ---------------------------------------------------------------------------
# A PyTorch zip whose one tensor member inflates to far more than the file.


def torch_zip_bomb(path: Path, inflated_mib: int) -> Path:
    """``torch.save`` of a small state dict, its tensor member swapped for ``inflated_mib`` MiB of deflated zeros.

    After a full flush deflate's output for a repeated chunk repeats too, so the
    stream is one compressed MiB copied, and the file stays small and quick to write.
    """
    buf = io.BytesIO()
    torch.save({"tok_emb.weight": torch.zeros(4)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    mib = bytes(1 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = packer.compress(mib) + packer.flush(zlib.Z_FULL_FLUSH)
    stream = chunk * inflated_mib + b"\x03\x00"  # an empty final block ends the stream
    crc = 0
    for _ in range(inflated_mib):
        crc = zlib.crc32(mib, crc)
    with zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            if info.filename.endswith("/data/0"):
                bomb = info.filename
                out.writestr(zipfile.ZipInfo(bomb), stream)  # stored as is, then relabelled below
            else:
                out.writestr(info, src.read(info.filename))
    raw = bytearray(path.read_bytes())
    name = bomb.encode()
    for signature, method_at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = 0
        while (at := raw.find(signature, start)) >= 0:
            start = at + 4
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if raw[name_at : name_at + len(name)] == name:
                struct.pack_into("<H", raw, at + method_at, 8)  # deflated
                struct.pack_into("<III", raw, at + method_at + 6, crc, len(stream), inflated_mib << 20)
    path.write_bytes(bytes(raw))
    return path
