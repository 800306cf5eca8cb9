"""Read TensorFlow checkpoints (the V2 "tensor bundle") without TensorFlow.

OpenAI released GPT-2 as such a checkpoint. On disk it is two files that
share a prefix:

- ``PREFIX.index``: a LevelDB-style sorted table. Blocks of prefix-compressed
  key/value entries, each block followed by a 1-byte compression type and a
  masked CRC32C; a 48-byte footer at the end holds the handles (varint
  offset + size) of the metaindex and index blocks and a magic number. The
  index block maps keys to data blocks. In the data blocks the empty key holds
  a ``BundleHeaderProto`` (shard count, byte order) and every other key is a
  tensor name whose value is a ``BundleEntryProto`` (dtype, shape, shard,
  offset, size, masked CRC32C of the bytes).
- ``PREFIX.data-0000S-of-0000N``: the raw tensor bytes, back to back.

The few protobuf fields needed are decoded by hand; nothing here depends on
TensorFlow or protobuf. Every tensor read is checked against its size and its
CRC32C, so a truncated or damaged checkpoint gives a clear error.

``gpt2_arrays`` renames OpenAI's GPT-2 variables to Hugging Face's names, so
that release goes through the same converter as a Hugging Face folder.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from gpt_tui.engine.crc32c import crc32c, unmask_crc
from gpt_tui.engine.file_checks import inside
from gpt_tui.errors import UserError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5  # compression type (1 byte) + masked crc32c (4 bytes)
# Bounds on what an index may claim: GPT-2 XL has 580 tensors, its index 40 KB.
MAX_ENTRIES = 20_000
MAX_KEY = 1024
MAX_INDEX_BYTES = 64 << 20

# tensorflow/core/framework/types.proto, the numeric types a checkpoint of weights can hold.
_DTYPES: dict[int, str] = {
    1: "float32",
    2: "float64",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    9: "int64",
    10: "bool",
    14: "bfloat16",
    17: "uint16",
    19: "float16",
    22: "uint32",
    23: "uint64",
}
_DTYPE_NAMES = {1: "float32", 7: "string", 8: "complex64", 14: "bfloat16", 18: "complex128", 20: "resource", 21: "variant"}


# ---------------------------------------------------------------------------
# Protobuf wire format and the sorted-table layout.


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or malformed varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message: ints for scalar wire types, bytes for nested ones."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield field, value
        elif wire == 1:
            if pos + 8 > len(buf):
                raise ValueError("truncated fixed64 field")
            yield field, struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated length-delimited field")
            yield field, bytes(buf[pos : pos + length])
            pos += length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise ValueError("truncated fixed32 field")
            yield field, struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Key/value pairs of one table block (keys share prefixes with the previous key)."""
    if len(block) < 4:
        raise ValueError("block too short")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * num_restarts
    if end < 0:
        raise ValueError("bad restart count")
    pos = 0
    key = b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + value_len > end:
            raise ValueError("entry runs past its block")
        if shared + unshared > MAX_KEY:  # tensor names are short; long ones would make each entry costly to rebuild
            raise ValueError(f"a key of {shared + unshared} bytes, longer than the {MAX_KEY} a tensor name needs")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_len]
        pos += value_len


# ---------------------------------------------------------------------------
# The bundle.


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: shard file, byte range, dtype code, shape, checksum."""

    name: str
    dtype_code: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    masked_crc: int | None
    sliced: bool

    @property
    def dtype_name(self) -> str:
        return _DTYPES.get(self.dtype_code) or _DTYPE_NAMES.get(self.dtype_code, f"type {self.dtype_code}")


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims: list[int] = []
    for field, value in _proto_fields(buf):
        if field == 2 and isinstance(value, bytes):  # Dim
            size = 0
            for dim_field, dim_value in _proto_fields(value):
                if dim_field == 1 and isinstance(dim_value, int):
                    size = dim_value
            dims.append(size)
            if len(dims) > 8:  # numpy takes 64 at most; weights have 1 to 3
                raise ValueError("a tensor of more than 8 dimensions")
        elif field == 3 and value:
            raise ValueError("tensor has unknown rank")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> TensorEntry:
    dtype = 0
    shape: tuple[int, ...] = ()
    shard = offset = size = 0
    crc: int | None = None
    sliced = False
    for field, value in _proto_fields(buf):
        if field == 1 and isinstance(value, int):
            dtype = value
        elif field == 2 and isinstance(value, bytes):
            shape = _parse_shape(value)
        elif field == 3 and isinstance(value, int):
            shard = value
        elif field == 4 and isinstance(value, int):
            offset = value
        elif field == 5 and isinstance(value, int):
            size = value
        elif field == 6 and isinstance(value, int):
            crc = value
        elif field == 7:
            sliced = True
    return TensorEntry(name, dtype, shape, shard, offset, size, crc, sliced)


class TFCheckpoint:
    """An opened tensor bundle: the index is parsed at once, tensors are read on demand."""

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = Path(prefix)
        self.index_path = Path(str(self.prefix) + ".index")
        self.num_shards = 1
        self.big_endian = False
        self.entries: dict[str, TensorEntry] = {}
        self._parse_index()

    def _fail(self, path: Path, what: str) -> UserError:
        return UserError(f"TensorFlow checkpoint file {path} is damaged or not a checkpoint ({what}); re-download it.")

    def _read_block(self, data: bytes, offset: int, size: int) -> bytes:
        end = offset + size + BLOCK_TRAILER_SIZE
        if end > len(data):
            raise self._fail(self.index_path, "a block runs past the end of the file, so it is truncated")
        block = data[offset : offset + size]
        compression = data[offset + size]
        (stored,) = struct.unpack_from("<I", data, offset + size + 1)
        if crc32c(data[offset : offset + size + 1]) != unmask_crc(stored):
            raise self._fail(self.index_path, f"checksum mismatch in the block at byte {offset}")
        if compression != 0:
            kind = "snappy" if compression == 1 else f"type {compression}"
            raise UserError(
                f"TensorFlow checkpoint index {self.index_path} uses {kind}-compressed blocks, which gpt-tui "
                "cannot read; re-save it uncompressed (TensorFlow's default) or convert it to Hugging Face format."
            )
        return block

    def _parse_index(self) -> None:
        try:
            if self.index_path.stat().st_size > MAX_INDEX_BYTES:
                raise self._fail(self.index_path, f"larger than the {MAX_INDEX_BYTES >> 20} MiB any index of weights needs")
            data = self.index_path.read_bytes()
        except FileNotFoundError:
            raise UserError(f"TensorFlow checkpoint index {self.index_path} does not exist.") from None
        except OSError as exc:
            raise UserError(f"Cannot read TensorFlow checkpoint index {self.index_path}: {exc.strerror}.") from None
        if len(data) < FOOTER_SIZE:
            raise self._fail(self.index_path, f"only {len(data)} bytes, shorter than the table footer")
        footer = data[-FOOTER_SIZE:]
        (magic,) = struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)
        if magic != TABLE_MAGIC:
            raise self._fail(self.index_path, "wrong magic number at the end, so it is truncated or another kind of file")
        try:
            _meta_offset, pos = _varint(footer, 0)
            _meta_size, pos = _varint(footer, pos)
            index_offset, pos = _varint(footer, pos)
            index_size, pos = _varint(footer, pos)
            index_block = self._read_block(data, index_offset, index_size)
            header_seen = False
            next_block, last_key = 0, None
            for _separator, handle in _block_entries(index_block):
                block_offset, hpos = _varint(handle, 0)
                block_size, _ = _varint(handle, hpos)
                if block_offset < next_block:  # a sorted table's blocks follow each other; each is read once
                    raise ValueError(f"the data block at byte {block_offset} overlaps or repeats an earlier one")
                next_block = block_offset + block_size + BLOCK_TRAILER_SIZE
                for key, value in _block_entries(self._read_block(data, block_offset, block_size)):
                    if last_key is not None and key <= last_key:
                        raise ValueError(f"key {key[:60]!r} is repeated or out of order")
                    last_key = key
                    if len(self.entries) >= MAX_ENTRIES:
                        raise ValueError(f"more than {MAX_ENTRIES} tensors")
                    if key == b"":
                        header_seen = True
                        self._parse_header(value)
                    else:
                        name = key.decode("utf-8", errors="replace")
                        self.entries[name] = _parse_entry(name, value)
        except ValueError as exc:
            raise self._fail(self.index_path, str(exc)) from None
        if not header_seen:
            raise self._fail(self.index_path, "no bundle header entry")

    def _parse_header(self, buf: bytes) -> None:
        for field, value in _proto_fields(buf):
            if field == 1 and isinstance(value, int):
                if not 1 <= value <= MAX_ENTRIES:
                    raise ValueError(f"a shard count of {value}")
                self.num_shards = value
            elif field == 2 and isinstance(value, int):
                self.big_endian = value == 1

    def shard_path(self, shard_id: int) -> Path:
        return Path(f"{self.prefix}.data-{shard_id:05d}-of-{self.num_shards:05d}")

    def read(self, name: str, *, verify: bool = True) -> np.ndarray:
        """One tensor as a numpy array (bfloat16 is widened to float32, which numpy lacks)."""
        entry = self.entries.get(name)
        if entry is None:
            raise UserError(f"TensorFlow checkpoint {self.index_path} has no tensor named {name!r}.")
        if entry.sliced:
            raise UserError(f"Tensor {name!r} in {self.index_path} is saved in partitioned slices, which gpt-tui cannot read.")
        numpy_name = _DTYPES.get(entry.dtype_code)
        if numpy_name is None:
            raise UserError(f"Tensor {name!r} in {self.index_path} has dtype {entry.dtype_name}, which gpt-tui cannot read.")
        storage = "uint16" if numpy_name == "bfloat16" else numpy_name
        dtype = np.dtype(storage).newbyteorder(">" if self.big_endian else "<")
        count = math.prod(entry.shape)  # Python integers: a product of huge dims cannot wrap around to 0
        if count * dtype.itemsize != entry.size:
            raise self._fail(self.index_path, f"tensor {name!r} of shape {list(entry.shape)} claims {entry.size} bytes")
        path = self.shard_path(entry.shard_id)
        inside(self.prefix.parent, path, self.index_path)
        try:
            with path.open("rb") as f:
                end = os.fstat(f.fileno()).st_size
                if entry.offset + entry.size > end:  # checked before the bytes are allocated
                    raise self._fail(path, f"tensor {name!r} claims bytes {entry.offset}..{entry.offset + entry.size} "
                                     f"but the file has {end}, so it is truncated or the index is damaged")
                raw = bytearray(entry.size)  # writable, so the array (and a tensor over it) needs no copy
                f.seek(entry.offset)
                got = f.readinto(raw)
        except FileNotFoundError:
            raise UserError(
                f"TensorFlow checkpoint data file {path} is missing; it belongs next to {self.index_path}."
            ) from None
        except OSError as exc:
            raise UserError(f"Cannot read TensorFlow checkpoint data file {path}: {exc.strerror}.") from None
        if got != entry.size:
            raise self._fail(
                path,
                f"tensor {name!r} needs bytes {entry.offset}..{entry.offset + entry.size} "
                f"but the file ends at {entry.offset + got}, so it is truncated",
            )
        if verify and entry.masked_crc is not None and crc32c(raw) != unmask_crc(entry.masked_crc):
            raise self._fail(path, f"checksum mismatch in tensor {name!r}")
        array = np.frombuffer(raw, dtype=dtype).reshape(entry.shape).astype(dtype.newbyteorder("="), copy=False)
        if numpy_name == "bfloat16":  # the top half of a float32
            return (array.astype(np.uint32) << 16).view(np.float32)
        return array

    def numeric_names(self) -> list[str]:
        """Tensors of numeric types; bookkeeping entries of other types (strings, object graphs) are left out."""
        return [name for name, entry in self.entries.items() if entry.dtype_code in _DTYPES]

    def read_all(self, *, verify: bool = True) -> dict[str, np.ndarray]:
        return {name: self.read(name, verify=verify) for name in self.numeric_names()}
