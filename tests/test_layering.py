import pkgutil
import subprocess
import sys

import gpt_tui.engine


def test_engine_never_imports_textual():
    modules = [f"gpt_tui.engine.{m.name}" for m in pkgutil.iter_modules(gpt_tui.engine.__path__)]
    assert len(modules) >= 10
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'textual_plotext', 'plotext'))\n"
        "print(bad)\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout


def test_cli_import_is_light():
    """`gpt-tui --help` must not pay for torch."""
    code = "import sys, gpt_tui.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def test_listing_runs_is_light(tmp_path):
    """`gpt-tui runs` reads run folders (checkpoints included) by name only: no torch."""
    run = tmp_path / "20260101-000000-tiny"
    (run / "checkpoints").mkdir(parents=True)
    (run / "status.json").write_text('{"state": "stopped", "step": 3}')
    (run / "checkpoints" / "step-00000003.safetensors").write_bytes(b"")
    code = (
        "import sys\n"
        "from gpt_tui.cli import main\n"
        f"main(['runs', '--dir', {str(tmp_path)!r}])\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert any(run.name in line for line in lines), result.stdout  # the run was read
    assert lines[-1] == "False", result.stdout
