"""``gpt-tui doctor``: what this machine computes with, measured, and the precision each phase runs in.

The calibration behind ``--precision auto`` (gpt_tui.engine.calibration) is
shown with its figures, so a surprising choice can be checked and measured
again (``--recalibrate``) after a driver, BIOS or torch change.
"""

from __future__ import annotations

import argparse

from gpt_tui.cli import console
from gpt_tui.textsafe import visible

# Deferred imports: torch loads only when the command runs; `gpt-tui --help` imports this.


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = sub.add_parser("doctor", help="show the device, its bf16/int8 units, the measured speeds and the precision per phase")
    doctor.add_argument("--device", default="auto")
    doctor.add_argument("--recalibrate", action="store_true", help="measure bf16 against fp32 again and cache the new figures")
    doctor.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    import torch

    from gpt_tui.engine import calibration as cal
    from gpt_tui.engine.device import resolve_device
    from gpt_tui.engine.precision import explain_precision
    from gpt_tui.engine.quantize import int8_kernel_available

    device = resolve_device(args.device)
    cpu = torch.device("cpu")
    console.say(f"Device: {visible(str(device))}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if device.type == "cuda":
        console.say(f"GPU: {visible(torch.cuda.get_device_name(device))}, bf16 {'supported' if torch.cuda.is_bf16_supported() else 'not supported'}")
    flags = cal.cpu_flags()
    missing = [f for f in ("amx_bf16", "avx512_bf16", "avx512_vnni") if f not in flags]
    console.say(f"CPU: {visible(cal.cpu_name())}")
    console.say(f"CPU flags that matter: {' '.join(flags) or 'none reported'}"
                + (f" (no {', '.join(missing)})" if missing else ""))
    figures = cal.calibration(recalibrate=args.recalibrate)
    console.say(f"Calibration ({figures.source}; {visible(cal.cache_dir() / cal.CALIBRATION_FILE)}):")
    console.say(f"  batch matmul 256x768 @ 768x2304: fp32 {figures.fp32_gflops:.1f} GFLOP/s, "
                f"bf16 {figures.bf16_gflops:.1f} GFLOP/s -> bf16 {figures.batch_ratio:.2f}x fp32")
    console.say(f"  one-row decode over 12 x (3072x768): fp32 {figures.fp32_row_gbps:.1f} GB/s, "
                f"bf16 {figures.bf16_row_gbps:.1f} GB/s -> bf16 {figures.row_ratio:.2f}x fp32 tokens/s")
    console.say(f"Precision with --precision auto on {visible(str(device))} (bf16 needs {cal.BF16_MARGIN:.1f}x):")
    chosen = {}
    for phase in cal.PHASES:
        chosen[phase], why = explain_precision(device, "auto", phase)
        console.say(f"  {phase:<11} {chosen[phase]}  ({why})")
    if chosen["prefill"] != chosen["decoding"]:
        console.say(f"  (generate prefills with its decoding copy, so a prompt is read in {chosen['decoding']} too)")
    problem = int8_kernel_available(cpu)
    console.say("int8 decoding (--quantize int8): " + ("available (aten._weight_int8pack_mm)" if problem is None else visible(problem)))
    return 0
