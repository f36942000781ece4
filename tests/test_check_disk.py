"""tools/check_disk.py: the free-space check ``make venv`` runs before installing torch."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "check_disk.py"
_spec = importlib.util.spec_from_file_location("check_disk", SCRIPT)
assert _spec is not None and _spec.loader is not None
check_disk = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_disk)


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, check=False)


def test_existing_parent_of_a_folder_not_yet_created(tmp_path: Path) -> None:
    assert check_disk.existing_parent(tmp_path / "a" / "b" / ".venv") == tmp_path
    assert check_disk.existing_parent(tmp_path) == tmp_path


def test_enough_space_passes_and_too_little_names_path_and_sizes(tmp_path: Path) -> None:
    free_gb = shutil.disk_usage(tmp_path).free / 1e9
    assert check_disk.check(tmp_path / ".venv", 0, "x") is None
    message = check_disk.check(tmp_path / ".venv", free_gb * 10 + 1, "the test venv")
    assert message is not None
    assert "the test venv" in message and str(tmp_path) in message
    assert f"{free_gb * 10 + 1:g} GB needed" in message


def test_command_line_exit_codes_and_skip(tmp_path: Path) -> None:
    assert _run(str(tmp_path / ".venv"), "--need-gb", "0").returncode == 0
    refused = _run(str(tmp_path / ".venv"), "--need-gb", "1e12", "--what", "the venv")
    assert refused.returncode == 2
    assert "not enough free disk for the venv" in refused.stderr
    assert check_disk.SKIP_ENV in refused.stderr
    env = {"PATH": "/usr/bin:/bin", check_disk.SKIP_ENV: "1"}
    assert _run(str(tmp_path), "--need-gb", "1e12", env=env).returncode == 0


@pytest.mark.parametrize("bad", ["-1", "many"])
def test_bad_need_gb_is_a_usage_error(tmp_path: Path, bad: str) -> None:
    out = _run(str(tmp_path), "--need-gb", bad)
    assert out.returncode == 2 and "--need-gb" in out.stderr
