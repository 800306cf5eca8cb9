"""How long Settings (F2) and Checkpoints (F3) take to show, idle and while training.

Each open is timed from the key event to the screen's first frame handed
to the terminal driver, as wall-clock seconds and as the UI thread's CPU
seconds: on a shared machine the CPU figure is the one that compares across
runs, the wall figure is what a user waits. Run on its own:
``python bench/open_times.py`` (or through bench_tui.py).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gpt_tui.tui.config import Settings, save_settings  # noqa: E402

TARGET_OPEN_S = 0.3
WARMUP_STEPS = 3


async def _open_once(app: Any, key: str) -> tuple[float, float]:
    """Seconds (wall, UI-thread CPU) from the key to the first frame of the screen it opens sent to the
    terminal driver; then Esc."""
    from textual import events

    from gpt_tui.tui.settings import SettingsScreen

    shown: list[tuple[float, float]] = []
    display = app._display

    def first_frame(screen: Any, update: Any) -> None:  # what the app hands the terminal driver
        if isinstance(screen, SettingsScreen) and update is not None and not shown:
            shown.append((time.perf_counter(), time.thread_time()))
        display(screen, update)

    app._display = first_frame
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    app._driver.send_message(events.Key(key, None))
    while not shown:
        await asyncio.sleep(0.001)
    app._display = display
    wall, cpu = shown[0][0] - wall0, shown[0][1] - cpu0
    await asyncio.sleep(0.5)  # what is built after the first frame finishes before the next open
    app._driver.send_message(events.Key("escape", None))
    while isinstance(app.screen, SettingsScreen):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    return wall, cpu


async def measure(settings: Settings, opens: int = 5) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """``opens`` opens of F2 and of F3, first idle, then while a run trains in the app."""
    from gpt_tui.tui.app import GptTuiApp

    save_settings(replace(settings, training=replace(settings.training, max_steps=100_000)))
    app = GptTuiApp(stable=False, warm_up=False)
    found: dict[tuple[str, str], list[tuple[float, float]]] = {}
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause(0.5)
        for state in ("idle", "training"):
            if state == "training":
                await pilot.press("f5")
                while app.progress.step < WARMUP_STEPS:
                    await asyncio.sleep(0.1)
            for _ in range(opens):
                for key in ("f2", "f3"):
                    found.setdefault((key.upper(), state), []).append(await _open_once(app, key))
        if app.trainer is not None:
            app.trainer.request_stop()
    return found


def rows(found: dict[tuple[str, str], list[tuple[float, float]]]) -> list[tuple[str, str, str, bool]]:
    """bench_tui's table rows: the median wall time of each open, with the UI thread's CPU beside it."""
    out = []
    for (key, state), samples in found.items():
        wall = statistics.median(s[0] for s in samples)
        cpu = statistics.median(s[1] for s in samples)
        name = {"F2": "Settings", "F3": "Checkpoints"}[key]
        out.append((f"{key} {name} opens, {state} (UI CPU {cpu:.2f} s)", f"{wall:.2f} s", f"< {TARGET_OPEN_S} s", wall < TARGET_OPEN_S))
    return out


def main() -> int:
    from bench_tui import bench_settings

    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("DATA", "CACHE", "CONFIG"):
            os.environ[f"GPT_TUI_{name}_DIR"] = str(Path(tmp) / name.lower())
        found = asyncio.run(measure(bench_settings(60)))
    for row in rows(found):
        print(f"{row[0]:<52}{row[1]:>10}  {row[2]:<10} {'yes' if row[3] else 'NO'}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
