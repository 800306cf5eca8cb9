"""A crafted precision calibration for the precision tests (the ``forward_dtypes`` fixture in conftest records what ran)."""

from __future__ import annotations

import json

from gpt_tui.engine import calibration as cal

BF16_FASTER = {"fp32_gflops": 100.0, "bf16_gflops": 400.0, "fp32_row_gbps": 20.0, "bf16_row_gbps": 8.0}
BF16_SLOWER = {"fp32_gflops": 100.0, "bf16_gflops": 90.0, "fp32_row_gbps": 10.0, "bf16_row_gbps": 9.0}


def craft_calibration(figures: dict[str, float]) -> None:
    """A calibration cache for this machine, so ``auto`` reads a choice instead of measuring one."""
    path = cal.cache_dir() / cal.CALIBRATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": 1, "machines": {cal.machine_key(): figures}}), encoding="utf-8")
