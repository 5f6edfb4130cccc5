"""ruff over the whole tree, with target-version py310 (pyproject): catches 3.11-only syntax (the WebUI's users
run 3.10 as often as 3.11) along with the style rules."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean_for_python_3_10():
    ruff = shutil.which("ruff")
    command = [ruff] if ruff else [sys.executable, "-m", "ruff"]
    out = subprocess.run([*command, "check", "--target-version", "py310", str(ROOT)], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_flags_3_11_only_syntax(tmp_path):
    # Guards the test above: the checker really refuses syntax Python 3.10 cannot parse.
    sample = tmp_path / "sample.py"
    sample.write_text("try:\n    pass\nexcept* ValueError:\n    pass\n")
    ruff = shutil.which("ruff")
    command = [ruff] if ruff else [sys.executable, "-m", "ruff"]
    out = subprocess.run([*command, "check", "--no-cache", "--isolated", "--target-version", "py310", str(sample)],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "3.11" in out.stdout + out.stderr
