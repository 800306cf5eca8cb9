"""Whether bf16 pays on this CPU, per phase, decided by measuring it once per machine and remembering the figures.

CPU flags alone mislead: a CPU with ``avx512_bf16`` but no AMX runs bf16
matmuls about 4x fp32, while a bf16 matrix-vector product (decoding) can be
slower than fp32 on another. So a short calibration (a few hundred ms) times
both formats at a training-like shape (a batch of rows: training, evaluation,
prefill) and at a decode-like one (one row through weights larger than the
caches), and each phase takes bf16 only where it measured clearly faster.
The figures are cached per CPU model, flags, torch version and thread count.
"""

from __future__ import annotations

import json
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from gpt_tui import fileio
from gpt_tui.errors import Notice
from gpt_tui.paths import cache_dir
from gpt_tui.textsafe import visible

CALIBRATION_FILE = "precision-calibration.json"
PHASES = ("training", "evaluation", "prefill", "decoding")
MATMUL_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx_vnni", "avx2", "fma",
                "bf16", "i8mm", "asimddp")  # x86 and Arm names of the units bf16 and int8 matmuls use
BF16_MARGIN = 1.2  # bf16 must beat fp32 by this factor: a near tie keeps the exact format
MAX_FILE_BYTES = 1 << 20
_FORMAT = 1


@dataclass(frozen=True)
class Calibration:
    """Measured figures on this machine: matmul GFLOP/s at a batch of rows, weight GB/s for one row."""

    fp32_gflops: float
    bf16_gflops: float
    fp32_row_gbps: float
    bf16_row_gbps: float
    source: str = "measured"  # "measured" now, or "cached" from an earlier run

    @property
    def batch_ratio(self) -> float:
        return self.bf16_gflops / self.fp32_gflops

    @property
    def row_ratio(self) -> float:
        """bf16 tokens per fp32 token when decoding: time for the same weights, half the bytes in bf16."""
        return 2.0 * self.bf16_row_gbps / self.fp32_row_gbps

    def choice(self, phase: str) -> str:
        ratio = self.row_ratio if phase == "decoding" else self.batch_ratio
        return "bf16" if ratio >= BF16_MARGIN else "fp32"

    def reason(self, phase: str) -> str:
        ratio = self.row_ratio if phase == "decoding" else self.batch_ratio
        what = "one-row decode" if phase == "decoding" else "batch matmuls"
        return f"{what} bf16 {ratio:.2f}x fp32 ({self.source})"


def cpu_name() -> str:
    for line in _cpuinfo_lines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The flags among MATMUL_FLAGS this CPU reports (Linux /proc/cpuinfo; empty elsewhere)."""
    for line in _cpuinfo_lines():
        if line.startswith(("flags", "Features")):
            have = set(line.split(":", 1)[-1].split())
            return [flag for flag in MATMUL_FLAGS if flag in have]
    return []


def _cpuinfo_lines() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            return fh.read(1 << 20).splitlines()
    except OSError:
        return []


def machine_key() -> str:
    """What the figures depend on: the CPU model and its flags, torch's version, the threads torch uses."""
    return f"{cpu_name()}|{','.join(cpu_flags())}|torch {torch.__version__}|{torch.get_num_threads()} threads"


def measure(rounds: int = 5) -> Calibration:
    """Time bf16 against fp32: (256 x 768) @ (768 x 2304), and one row through 12 (3072 x 768) weights.

    The formats take turns in every round and each keeps its best time, timed
    by the process's CPU time: on a shared machine the wall clock also counts
    the time other processes hold the cores, which can swing a ratio tenfold.
    """
    runs: dict[str, Any] = {}
    nbytes: dict[str, int] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x = torch.full((256, 768), 0.01, dtype=dtype)
        w = torch.full((2304, 768), 0.02, dtype=dtype)
        runs[f"{name}_gflops"] = lambda x=x, w=w: F.linear(x, w)
        # One row through more bytes than a CPU cache holds, as a decode step reads every weight once.
        weights = [torch.full((3072, 768), 0.02, dtype=dtype) for _ in range(12)]
        nbytes[name] = sum(m.numel() * m.element_size() for m in weights)
        row = torch.full((1, 768), 0.01, dtype=dtype)
        layers = _decode_layers(weights)
        runs[f"{name}_row_gbps"] = lambda row=row, layers=layers: [layer(row) for layer in layers]
    best = {key: float("inf") for key in runs}
    for run in runs.values():
        run()  # warm-up: kernel selection and first-touch page faults
    for _ in range(rounds):
        for key, run in runs.items():
            start = time.process_time()
            run()
            best[key] = min(best[key], max(time.process_time() - start, 1e-9))
    figures = {}
    for name in ("fp32", "bf16"):
        figures[f"{name}_gflops"] = 2 * 256 * 768 * 2304 / best[f"{name}_gflops"] / 1e9
        figures[f"{name}_row_gbps"] = nbytes[name] / best[f"{name}_row_gbps"] / 1e9
    return Calibration(**figures)


def _decode_layers(weights: list[torch.Tensor]) -> list[Any]:
    """The layers a decoding copy would run these weights with: bf16 ones reordered where oneDNN can."""
    from torch import nn

    from gpt_tui.engine.packed_linear import PackedLinear, packing_available

    layers = []
    for weight in weights:
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
        linear.weight = nn.Parameter(weight, requires_grad=False)
        packed = weight.dtype == torch.bfloat16 and packing_available()
        layers.append(PackedLinear(linear) if packed else linear)
    return layers


def _path() -> Any:
    return cache_dir() / CALIBRATION_FILE


def _read_all() -> dict[str, Any]:
    """Every machine's cached figures; a file that cannot be read as such is a note and an empty start."""
    path = _path()
    try:
        if path.is_symlink():
            raise ValueError("it is a symbolic link")
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise ValueError("it is larger than any calibration")
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("machines"), dict):
            raise ValueError("it is not a calibration file")
        return data["machines"]
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        warnings.warn(Notice(f"the precision calibration {visible(path)} could not be used ({visible(exc)}); measuring again."))
        return {}


def _from_entry(entry: Any) -> Calibration | None:
    names = ("fp32_gflops", "bf16_gflops", "fp32_row_gbps", "bf16_row_gbps")
    if not isinstance(entry, dict):
        return None
    values = [entry.get(n) for n in names]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1e9 for v in values):
        return None
    return Calibration(*[float(v) for v in values], source="cached")  # type: ignore[arg-type]


def _write(key: str, calibration: Calibration, machines: dict[str, Any]) -> None:
    """Remember the figures; a cache that cannot be written only means measuring again next time."""
    entry = {k: v for k, v in asdict(calibration).items() if k != "source"}
    machines = {**machines, key: entry}
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        fileio.atomic_write_text(_path(), json.dumps({"format": _FORMAT, "machines": machines}, indent=1, sort_keys=True))
    except OSError:
        pass


_memo: dict[str, Calibration] = {}


def calibration(recalibrate: bool = False) -> Calibration:
    """This machine's figures: from memory, else the cache file, else measured now (and cached)."""
    key = machine_key()
    memo_key = f"{_path()}|{key}"
    if not recalibrate and memo_key in _memo:
        return _memo[memo_key]
    machines = _read_all()
    found = None if recalibrate else machines.get(key)
    result = _from_entry(found) if found is not None else None
    if found is not None and result is None:
        warnings.warn(Notice(f"the precision calibration {visible(_path())} holds unusable figures; measuring again."))
    if result is None:
        result = measure()
        _write(key, result, machines)
    _memo[memo_key] = result
    return result


def cpu_choice(phase: str) -> str:
    """``bf16`` or ``fp32`` for ``phase`` on this CPU, by the calibration."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    return calibration().choice(phase)
