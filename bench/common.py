"""What every bench prints about the machine, and small helpers they share."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine_line() -> str:
    import torch

    from gpt_tui.engine.precision import cpu_has_amx_bf16

    return (
        f"{cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"AMX-BF16: {'yes' if cpu_has_amx_bf16() else 'no'}, Python {platform.python_version()}"
    )


def warn_if_busy() -> None:
    try:
        one_minute = os.getloadavg()[0]
    except OSError:
        return
    cpus = os.cpu_count() or 1
    if one_minute > 1.25 * cpus:
        print(
            f"WARNING: load average {one_minute:.1f} on {cpus} CPUs: other processes share the cores, "
            "so absolute numbers are low; ratios measured in this run are still comparable."
        )


def run_worker(
    script: Path, args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 1800,
    flags: Sequence[str] = (),
) -> dict[str, Any]:
    """Run ``script [flags] --worker ...`` in a fresh process (so no process-wide setting leaks between measurements)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), full_env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, str(script), *flags, "--worker", *args],
        capture_output=True, text=True, env=full_env, timeout=timeout, cwd=str(REPO),
    )
    if out.returncode != 0:
        sys.stderr.write(out.stdout + out.stderr)
        raise SystemExit(f"worker {' '.join(args)} failed with exit code {out.returncode}")
    last = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")][-1]
    return json.loads(last[len("RESULT "):])


def emit_result(result: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], text_columns: int = 2) -> str:
    """A plain-text table: the first ``text_columns`` columns left-aligned, the numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(" | ".join(c.ljust(w) if i < text_columns or n == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
