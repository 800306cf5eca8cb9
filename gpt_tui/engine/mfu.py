"""Model FLOPs utilization and peak memory: how much of the device a training step uses.

MFU is the PaLM paper's measure (Chowdhery et al. 2022, appendix B), as nanoGPT
reports it: a forward and backward pass costs 6 FLOPs per token for each weight
of a matmul, plus 12·L·H·Q·T for attention's two matmuls (L layers, H heads of
Q dimensions, T tokens of context). N counts the weights that take part in a
matmul: the position table is a lookup and is left out; the token table is a
lookup too, so it counts only when the head shares it (nanoGPT's tied case,
where it is the head's weight); an untied head counts as its own matmul.

The peak is the device's dense matmul rate in the precision the run computes
in: from a table of datasheet figures for known GPUs, or else measured with a
matmul of about a tenth of a second, once per process. The best rate a machine
has shown is kept in the cache directory and is the one reported, so a run
started while other work loads the machine is not measured against a low peak.
torch is imported inside the functions that use it: the CLI and the app format
these numbers without loading it.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpt_tui import fileio
from gpt_tui.paths import cache_dir

if TYPE_CHECKING:
    import torch

    from gpt_tui.engine.events import StartEvent, StepEvent
    from gpt_tui.engine.model import GPTModel

PEAKS_FILE = "device-peaks.json"

# Dense (no structured sparsity) tensor-core peaks in TFLOP/s per GPU, from NVIDIA's datasheets:
# H100 / H200 SXM: BF16 989, TF32 494.7, FP32 67 (H100 PCIe 756 / 378 / 51; H100 NVL and H200 NVL 835 / 417.5 / 60);
# A100 (SXM and PCIe): BF16 312, TF32 156, FP32 19.5; L40S: 362 / 183 / 91.6; L40: 181 / 90.5 / 90.5;
# L4: 121 / 60 / 30.3; A10: 125 / 62.5 / 31.2; RTX 4090 (Ada whitepaper, FP32 accumulate): 165.2 / 82.6 / 82.6;
# RTX 3090 (Ampere GA102 whitepaper): 71 / 35.6 / 35.6; V100 SXM2: FP32 15.7; T4: FP32 8.1 (neither has bf16 or TF32).
# B200: the HGX B200 datasheet's 8-GPU figures (BF16 36 PFLOP/s and TF32 18 with sparsity, FP32 600 TFLOP/s)
# per GPU and without sparsity. GH200 pairs an H100-class GPU with a CPU and has its figures. Matched by a fragment of
# torch.cuda.get_device_name(), most specific first; a GPU the table lacks is measured.
GPU_PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("GB200", {}),
    ("B200", {"bf16": 2250.0, "tf32": 1125.0, "fp32": 75.0}),
    ("H200 NVL", {"bf16": 835.0, "tf32": 417.5, "fp32": 60.0}),
    ("H100 NVL", {"bf16": 835.0, "tf32": 417.5, "fp32": 60.0}),
    ("H100 PCIe", {"bf16": 756.0, "tf32": 378.0, "fp32": 51.0}),
    ("GH200", {"bf16": 989.0, "tf32": 494.7, "fp32": 67.0}),
    ("H200", {"bf16": 989.0, "tf32": 494.7, "fp32": 67.0}),
    ("H100", {"bf16": 989.0, "tf32": 494.7, "fp32": 67.0}),
    ("A100", {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    ("L40S", {"bf16": 362.0, "tf32": 183.0, "fp32": 91.6}),
    ("L40", {"bf16": 181.0, "tf32": 90.5, "fp32": 90.5}),
    ("L4", {"bf16": 121.0, "tf32": 60.0, "fp32": 30.3}),
    ("A10G", {}),  # a cloud variant without a published datasheet figure: measured instead
    ("A10", {"bf16": 125.0, "tf32": 62.5, "fp32": 31.2}),
    ("RTX 4090", {"bf16": 165.2, "tf32": 82.6, "fp32": 82.6}),
    ("RTX 3090", {"bf16": 71.0, "tf32": 35.6, "fp32": 35.6}),
    ("V100", {"fp32": 15.7}),
    ("T4", {"fp32": 8.1}),
)

_memo: dict[str, "Peak | None"] = {}  # this process's answers, so a second run in it measures nothing
_memo_lock = threading.Lock()


@dataclass(frozen=True)
class Peak:
    """A device's matmul peak: FLOP/s, the number format it is for, and where the figure came from."""

    flops: float
    precision: str  # "bf16", "tf32" or "fp32"
    source: str  # "datasheet" or "measured"

    @property
    def label(self) -> str:
        return f"{self.precision}, {self.source}"


def flops_per_token(matmul_params: int, n_layers: int, emb_dim: int, seq_len: int) -> float:
    """Training FLOPs per token (forward and backward): 6N + 12·L·H·Q·T, with H·Q = emb_dim."""
    return 6.0 * matmul_params + 12.0 * n_layers * emb_dim * seq_len


def matmul_parameters(model: "GPTModel") -> int:
    """N for the formula: every parameter but the position table, and the token table only when it is the head."""
    n = model.num_parameters() - model.pos_emb.weight.numel()
    if model.head.weight is not model.tok_emb.weight:
        n -= model.tok_emb.weight.numel()
    return n


def mfu(tokens_per_sec: float, flops_per_tok: float, peak_flops: float, devices: int = 1) -> float:
    """The fraction of ``devices`` devices' peak that ``tokens_per_sec`` (over all of them) amounts to."""
    return tokens_per_sec * flops_per_tok / (peak_flops * devices)


def peak_memory(device: "torch.device") -> int | None:
    """Bytes at the high-water mark: the GPU allocator's on CUDA, the process's peak resident set on a CPU."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    if device.type == "cpu":
        try:
            import resource  # POSIX only
        except ImportError:
            return None
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux
    return None


def matmul_precision(device: "torch.device", precision: str) -> str:
    """The format the matmuls really run in: fp32 on NVIDIA GPUs runs as TF32 (gpt_tui.engine.runtime turns it on)."""
    from gpt_tui.engine.precision import resolve_precision

    resolved = resolve_precision(device, precision)
    if resolved == "fp32" and device.type == "cuda":
        import torch

        if torch.backends.cuda.matmul.allow_tf32 and torch.cuda.get_device_capability(device)[0] >= 8:
            return "tf32"
    return resolved


def datasheet_peak(name: str, precision: str) -> Peak | None:
    for fragment, peaks in GPU_PEAK_TFLOPS:
        if fragment.lower() in name.lower():
            tflops = peaks.get(precision)
            return Peak(tflops * 1e12, precision, "datasheet") if tflops else None
    return None


def measure_peak(device: "torch.device", precision: str, budget_s: float = 0.1) -> float:
    """FLOP/s of a square matmul in ``precision``: the best of a few runs within about ``budget_s`` seconds."""
    import torch

    size = 4096 if device.type == "cuda" else 1024
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    # A generator of its own: a draw from torch's global one would shift the run's dropout masks.
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    a @ b  # the first call pays for kernel selection and thread start-up
    sync()
    best = float("inf")
    deadline = time.perf_counter() + budget_s
    for _ in range(8):
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
        if time.perf_counter() > deadline:
            break
    return 2.0 * size**3 / best


def _machine_key(device: "torch.device", precision: str) -> str:
    """What a measured peak depends on: the chip, the threads torch uses, the number format, torch's version."""
    import torch

    if device.type == "cuda":
        chip = torch.cuda.get_device_name(device)
    else:
        chip = _cpu_name()
    return f"{device.type}|{chip}|{torch.get_num_threads()}|{precision}|{torch.__version__}"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads((cache_dir() / PEAKS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(key: str, flops: float) -> None:
    """Remember a measurement; a cache that cannot be written only means measuring again next time."""
    data = _read_cache()
    data[key] = flops
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        fileio.atomic_write_text(cache_dir() / PEAKS_FILE, json.dumps(data, indent=1, sort_keys=True))
    except OSError:
        pass


def device_peak(device: "torch.device", precision: str = "auto") -> Peak | None:
    """The peak MFU is measured against: a datasheet figure for a known GPU, else the best this machine has measured."""
    resolved = matmul_precision(device, precision)
    if device.type not in ("cuda", "cpu"):
        return None  # no datasheet, and a timed matmul on other backends says little without a sync
    key = _machine_key(device, resolved)
    with _memo_lock:
        if key in _memo:
            return _memo[key]
        peak = None
        if device.type == "cuda":
            import torch

            peak = datasheet_peak(torch.cuda.get_device_name(device), resolved)
        if peak is None:
            cached = _read_cache().get(key)
            best = float(cached) if isinstance(cached, (int, float)) and not isinstance(cached, bool) and cached > 0 else 0.0
            flops = measure_peak(device, resolved)
            if flops > best:
                _write_cache(key, flops)
            peak = Peak(max(flops, best), resolved, "measured")
        _memo[key] = peak
        return peak


class Utilization:
    """What a run's events report about the device: its peak (at the start) and each step's MFU and peak memory."""

    def __init__(self, model: "GPTModel", seq_len: int, device: "torch.device", precision: str, devices: int = 1) -> None:
        config = model.config
        self.flops_per_token = flops_per_token(matmul_parameters(model), config.n_layers, config.emb_dim, seq_len)
        self.device = device
        self.devices = devices
        self.peak = device_peak(device, precision)
        self.shape = {"n_layers": config.n_layers, "n_heads": config.n_heads, "emb_dim": config.emb_dim,
                      "context_length": config.context_length, "precision": _precision_line(device, precision)}

    def start_fields(self) -> dict[str, Any]:
        """StartEvent's fields: the model's shape, the peak and its source."""
        if self.peak is None:
            return dict(self.shape)
        return {**self.shape, "peak_flops": self.peak.flops, "peak_source": self.peak.label}

    def step_fields(self, tokens_per_sec: float) -> dict[str, Any]:
        """StepEvent's fields for a step that ran at ``tokens_per_sec`` over every device."""
        value = None if self.peak is None else mfu(tokens_per_sec, self.flops_per_token, self.peak.flops, self.devices)
        return {"mfu": value, "peak_memory": peak_memory(self.device)}


def _precision_line(device: "torch.device", precision: str) -> str:
    from gpt_tui.engine.precision import precision_line

    return precision_line(device, precision, ("training", "evaluation"))


def format_flops(flops: float) -> str:
    """1.9e12 -> "1.9 TFLOP/s", 6.7e10 -> "67 GFLOP/s"."""
    for limit, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if flops >= limit:
            value = flops / limit
            return f"{value:.1f} {prefix}FLOP/s" if value < 10 else f"{value:.0f} {prefix}FLOP/s"
    return f"{flops:.0f} FLOP/s"


def format_bytes(n: float) -> str:
    """Memory in binary units: 512 MiB, 1.5 GiB."""
    for limit, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= limit:
            value = n / limit
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n:.0f} B"


def format_mfu(value: float) -> str:
    """A fraction as a percentage with enough digits to be nonzero on a CPU: 22%, 3.4%, 0.12%."""
    pct = 100.0 * value
    if pct >= 10:
        return f"{pct:.0f}%"
    if pct >= 1:
        return f"{pct:.1f}%"
    return f"{pct:.2f}%"


def mfu_text(step: "StepEvent") -> str:
    """" MFU 2.3%" for the progress bar, or nothing when the device has no known peak."""
    return f" MFU {format_mfu(step.mfu)}" if step.mfu is not None else ""


def speed_line(step: "StepEvent", start: "StartEvent | None") -> str:
    """The log's speed line: tokens/s, MFU against the peak and where that came from, and peak memory."""
    parts = [f"Speed: {step.tokens_per_sec:,.0f} tok/s"]
    if step.mfu is not None and start is not None and start.peak_flops:
        parts.append(f"MFU {format_mfu(step.mfu)} of {format_flops(start.peak_flops)} ({start.peak_source})")
    if step.peak_memory is not None:
        parts.append(f"peak memory {format_bytes(step.peak_memory)}")
    return ", ".join(parts)
