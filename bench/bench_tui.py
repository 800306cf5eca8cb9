"""How much the app costs: training speed inside the app vs headless, key latency, launch time.

    python bench/bench_tui.py [--steps 60] [--rounds 2] [--presses 20] [--bursts 20]

1. Training tokens/s on one tiny config, headless (the engine's Trainer in a
   subprocess) and inside the app (``python -m gpt_tui`` in a real
   pseudo-terminal, F5 pressed, the screen drained as a terminal would).
   Rounds alternate headless/app so load on the machine hits both alike; the
   rate is read from each run's metrics.jsonl over the steps after a warm-up.
2. Key-press-to-screen latency while training, median of N presses into the
   REPL input: in a real pseudo-terminal (key written to the pty until the
   typed text comes back in the screen output), and in-process with Pilot's
   headless app (key event posted until the compositor shows it).
3. Keystroke order while training: bursts of keys written to the pty in one
   write (Backspace then "xyz" after "abc"), counted right when the input
   shows "abxyz".
4. Launch to first frame: ``python -m gpt_tui`` in a pseudo-terminal until the
   first bytes of the screen, and until a known string of the layout, arrive.
5. Settings (F2) and Checkpoints (F3) open time, idle and while training:
   key event to the screen's first frame, wall clock and UI-thread CPU
   (bench/open_times.py, which also runs on its own).

Every run uses temporary user directories; nothing touches the real ones.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import pty
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpt_tui.tui.config import Settings, save_settings, train_config_kwargs  # noqa: E402

import open_times  # noqa: E402  (bench/open_times.py: F2 and F3 open times)

WARMUP_STEPS = 5
TARGET_RATIO = 0.97
TARGET_LATENCY_MS = 100.0
TARGET_LAUNCH_S = 1.5
LAYOUT_MARKER = b"Talk to the model"


def bench_settings(steps: int) -> Settings:
    """The app's own defaults, cut to a fixed number of steps with no sample at the end."""
    base = Settings()
    return replace(base, training=replace(base.training, max_steps=steps, sample_tokens=0, device="cpu"))


def user_dirs(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DATA", "CACHE", "CONFIG"):
        env[f"GPT_TUI_{name}_DIR"] = str(root / name.lower())
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TERM", "xterm-256color")
    env["COLORTERM"] = "truecolor"
    return env


def rate_from_metrics(run_dir: Path) -> float:
    """Tokens per second between the warm-up step and the last step, evaluations included."""
    steps = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("type") == "step":
            steps.append(record)
    first, last = steps[WARMUP_STEPS - 1], steps[-1]
    return (last["tokens_seen"] - first["tokens_seen"]) / (last["elapsed"] - first["elapsed"])


# ----- headless -----
HEADLESS = """
import json, sys
from gpt_tui.engine.trainer import Trainer, TrainConfig
Trainer(TrainConfig(**json.loads(sys.argv[1]))).run()
"""


def run_headless(settings: Settings, root: Path) -> float:
    kwargs = train_config_kwargs(settings.training)
    kwargs["run_dir"] = str(root / "headless-run")
    done = subprocess.run([sys.executable, "-c", HEADLESS, json.dumps(kwargs)], env=user_dirs(root), capture_output=True, text=True, timeout=1800)
    metrics = root / "headless-run" / "metrics.jsonl"
    if not metrics.exists() or '"type": "done"' not in metrics.read_text():
        raise RuntimeError(f"headless run failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return rate_from_metrics(root / "headless-run")


# ----- the app in a pseudo-terminal -----
class PtyApp:
    """``python -m gpt_tui`` on a pseudo-terminal, its output drained (and timed) like a terminal does."""

    def __init__(self, env: dict[str, str], columns: int = 120, rows: int = 36) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gpt_tui"], stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True, cwd=str(ROOT)
        )
        os.close(slave)
        self.output = bytearray()
        self.first_byte_at: float | None = None
        self.lock = threading.Lock()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.5)
                if not ready:
                    if self.process.poll() is not None:
                        return
                    continue
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                if self.first_byte_at is None:
                    self.first_byte_at = time.perf_counter()
                self.output += data

    def wait_for(self, marker: bytes, timeout: float = 60.0, start: int = 0) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self.lock:
                if marker in self.output[start:]:
                    return time.perf_counter()
            time.sleep(0.005)
        raise TimeoutError(f"{marker!r} did not appear on screen")

    def send(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> None:
        if self.process.poll() is None:
            self.send(b"\x11")  # ctrl+q
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=30)
        os.close(self.master)


F5 = b"\x1b[15~"


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds used so far by each thread of a process (Linux /proc)."""
    out: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def run_in_app(settings: Settings, root: Path) -> tuple[float, float]:
    """Tokens/s of a run started with F5, and the UI thread's share of the app's CPU while it trained."""
    env = user_dirs(root)
    save_settings(settings, root / "config" / "settings.toml")
    app = PtyApp(env)
    try:
        app.wait_for(LAYOUT_MARKER)
        time.sleep(1.0)
        app.send(F5)
        deadline = time.time() + 1800
        before: dict[int, float] | None = None
        after: dict[int, float] = {}
        while time.time() < deadline:
            if before is None and first_run_step(root) >= WARMUP_STEPS:
                before = thread_cpu(app.process.pid)
            runs = list((root / "data" / "runs").glob("*/status.json"))
            if runs and json.loads(runs[0].read_text() or "{}").get("state") in ("finished", "failed", "stopped"):
                break
            after = thread_cpu(app.process.pid)
            time.sleep(0.2)
        (run_dir,) = [p.parent for p in (root / "data" / "runs").glob("*/status.json")]
    finally:
        app.close()
    before = before or {}
    used = {tid: cpu - before.get(tid, 0.0) for tid, cpu in after.items()}
    ui_share = used.get(app.process.pid, 0.0) / max(sum(used.values()), 1e-9)
    return rate_from_metrics(run_dir), ui_share


def launch_times(root: Path) -> tuple[float, float]:
    """Seconds to the first byte on the terminal and to the finished layout."""
    app = PtyApp(user_dirs(root), columns=80, rows=24)
    try:
        shown = app.wait_for(LAYOUT_MARKER)
        assert app.first_byte_at is not None
        return app.first_byte_at - app.started, shown - app.started
    finally:
        app.close()


# ----- key latency -----
def first_run_step(root: Path) -> int:
    for metrics in (root / "data" / "runs").glob("*/metrics.jsonl"):
        steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if '"type": "step"' in line]
        return max(steps, default=0)
    return 0


def key_latency_in_terminal(settings: Settings, root: Path, presses: int) -> list[float]:
    """Seconds from writing a key to the pty until the typed text comes back in the screen output."""
    env = user_dirs(root)
    save_settings(replace(settings, training=replace(settings.training, max_steps=100_000)), root / "config" / "settings.toml")
    app = PtyApp(env)
    samples: list[float] = []
    try:
        app.wait_for(LAYOUT_MARKER)
        time.sleep(0.5)
        app.send(F5)
        deadline = time.time() + 600
        while first_run_step(root) < WARMUP_STEPS and time.time() < deadline:
            time.sleep(0.2)
        letters = "qwertyuiopasdfghjklzxcvbnm"
        typed = ""
        for i in range(presses):
            typed += letters[i % len(letters)]
            with app.lock:
                mark = len(app.output)
            start = time.perf_counter()
            app.send(typed[-1].encode())
            shown = app.wait_for(typed.encode(), timeout=30, start=mark)
            samples.append(shown - start)
            time.sleep(0.2)  # the pace of a person typing, not a flood
            if len(typed) >= 30:
                app.send(b"\x15")  # ctrl+u clears the input
                typed = ""
                time.sleep(0.3)
        app.send(b"\x11")  # ctrl+q asks while training...
        time.sleep(1.0)
        app.send(b"y")  # ...and stops, saves, quits
        app.process.wait(timeout=120)
    finally:
        app.close()
    return samples


def keystroke_order_in_terminal(settings: Settings, root: Path, bursts: int) -> tuple[int, int]:
    """Bursts written to the pty in one write while training (Backspace then "xyz" after "abc"): how many came out in order."""
    save_settings(replace(settings, training=replace(settings.training, max_steps=100_000)), root / "config" / "settings.toml")
    app = PtyApp(user_dirs(root))
    right = 0
    try:
        app.wait_for(LAYOUT_MARKER)
        app.send(F5)
        deadline = time.time() + 600
        while first_run_step(root) < WARMUP_STEPS and time.time() < deadline:
            time.sleep(0.2)
        for _ in range(bursts):
            with app.lock:
                mark = len(app.output)
            app.send(b"abc")
            app.wait_for(b"abc", timeout=30, start=mark)
            with app.lock:
                mark = len(app.output)
            app.send(b"\x7fxyz")  # one write, as key repeat or an SSH packet delivers them
            try:
                app.wait_for(b"abxyz", timeout=2, start=mark)
                right += 1
            except TimeoutError:
                pass
            app.send(b"\x15")  # ctrl+u clears the input
            time.sleep(0.3)
    finally:
        app.close()
    return right, bursts


async def key_latency_in_process(settings: Settings, presses: int) -> list[float]:
    """The same with Pilot's app in-process: key event posted to the driver, until the compositor shows it."""
    from textual import events

    from gpt_tui.tui.app import GptTuiApp

    save_settings(replace(settings, training=replace(settings.training, max_steps=100_000)))
    app = GptTuiApp(stable=False, warm_up=False)
    samples: list[float] = []
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("f5")
        while app.progress.step < WARMUP_STEPS:
            await asyncio.sleep(0.1)
        typed = ""
        letters = "qwertyuiopasdfghjklzxcvbnm"
        for i in range(presses):
            ch = letters[i % len(letters)]
            typed += ch
            start = time.perf_counter()
            # Pilot.press waits for the whole process to go idle, which never happens while
            # training runs; post the key the way the driver does and watch the screen instead.
            app._driver.send_message(events.Key(ch, ch))
            while typed not in "\n".join(s.text for s in app.screen._compositor.render_strips()):
                await asyncio.sleep(0.001)
            samples.append(time.perf_counter() - start)
            await asyncio.sleep(0.2)
            if len(typed) >= 30:
                app.repl.input.value = ""
                typed = ""
                await asyncio.sleep(0.1)
        app.trainer.request_stop()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps per run")
    parser.add_argument("--rounds", type=int, default=3, help="headless/app pairs, alternated")
    parser.add_argument("--presses", type=int, default=20, help="key presses for the latency median")
    parser.add_argument("--bursts", type=int, default=20, help="key bursts for the keystroke-order count")
    args = parser.parse_args()
    settings = bench_settings(args.steps)
    t = settings.training
    print(f"config: tiny, context {t.context_length}, batch {t.batch_size}, {args.steps} steps, eval every {t.eval_freq} x {t.eval_iter} batches; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start")

    headless: list[float] = []
    in_app: list[float] = []
    ui_shares: list[float] = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            headless.append(run_headless(settings, Path(tmp)))
        with tempfile.TemporaryDirectory() as tmp:
            rate, share = run_in_app(settings, Path(tmp))
        in_app.append(rate)
        ui_shares.append(share)
        print(f"  round {r + 1}: headless {headless[-1]:.0f} tok/s, in app {rate:.0f} tok/s "
              f"(ratio {rate / headless[-1]:.0%}; UI thread {share:.1%} of the app's CPU)", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        latencies = key_latency_in_terminal(settings, Path(tmp), args.presses)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("DATA", "CACHE", "CONFIG"):
            os.environ[f"GPT_TUI_{name}_DIR"] = str(Path(tmp) / name.lower())
        pilot_latencies = asyncio.run(key_latency_in_process(settings, args.presses))
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("DATA", "CACHE", "CONFIG"):
            os.environ[f"GPT_TUI_{name}_DIR"] = str(Path(tmp) / name.lower())
        opened = asyncio.run(open_times.measure(settings))  # F2 and F3, idle and while training
    with tempfile.TemporaryDirectory() as tmp:
        in_order, bursts = keystroke_order_in_terminal(settings, Path(tmp), args.bursts)
    launches = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            launches.append(launch_times(Path(tmp)))

    h, a = statistics.median(headless), statistics.median(in_app)
    ratio = statistics.median(x / y for x, y in zip(in_app, headless))  # pairs run back to back
    latency_ms = statistics.median(latencies) * 1000
    pilot_ms = statistics.median(pilot_latencies) * 1000
    first_byte = statistics.median(x[0] for x in launches)
    first_layout = statistics.median(x[1] for x in launches)
    rows = [
        ("training tokens/s headless", f"{h:.0f}", ""),
        ("training tokens/s in the app", f"{a:.0f}", ""),
        ("in app / headless (median of the round ratios)", f"{ratio:.1%}", f">= {TARGET_RATIO:.0%}", ratio >= TARGET_RATIO),
        ("UI thread's share of the app's CPU while training", f"{statistics.median(ui_shares):.1%}", ""),
        ("key press to screen while training (terminal)", f"{latency_ms:.0f} ms", f"< {TARGET_LATENCY_MS:.0f} ms", latency_ms < TARGET_LATENCY_MS),
        ("key press to screen while training (in-process)", f"{pilot_ms:.0f} ms", f"< {TARGET_LATENCY_MS:.0f} ms", pilot_ms < TARGET_LATENCY_MS),
        ("key bursts applied in order while training (terminal)", f"{in_order}/{bursts}", "all", in_order == bursts),
        ("launch to first frame (first bytes)", f"{first_byte:.2f} s", f"< {TARGET_LAUNCH_S} s", first_byte < TARGET_LAUNCH_S),
        ("launch to full layout on screen", f"{first_layout:.2f} s", f"< {TARGET_LAUNCH_S} s", first_layout < TARGET_LAUNCH_S),
        *open_times.rows(opened),
    ]
    print()
    print(f"{'measure':<52}{'result':>12}  {'target':<10} ok")
    for row in rows:
        verdict = "" if len(row) < 4 else ("yes" if row[3] else "NO")
        print(f"{row[0]:<52}{row[1]:>12}  {row[2]:<10} {verdict}")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end (other processes share these CPUs; compare only ratios from one run)")
    print(f"terminal key latency (ms): min {min(latencies) * 1000:.0f}, max {max(latencies) * 1000:.0f}, n {len(latencies)}; "
          f"in-process: min {min(pilot_latencies) * 1000:.0f}, max {max(pilot_latencies) * 1000:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
