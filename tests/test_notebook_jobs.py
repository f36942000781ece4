"""The notebook runner's parallel mode: same outputs, longest chapters first, failures stop it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from isoclip import notebooks


@pytest.fixture
def fake_runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Replace discovery, checking and execution by stand-ins that record what ran when."""
    stems = ["01_a", "02_b", "03_c", "04_d"]
    state: dict[str, Any] = {"started": [], "running": 0, "max_running": 0, "fail": None,
                             "lock": threading.Lock(), "sleep": 0.05}

    monkeypatch.setattr(notebooks, "notebook_paths",
                        lambda only=None: [tmp_path / f"{s}.md" for s in stems])
    monkeypatch.setattr(notebooks, "check_parameters",
                        lambda params, only=None, overrides=None: {s: {"x": 1} for s in stems})

    def execute(src: Path, injected: dict[str, Any], out_dir: Path, tmp: Path,
                kernel: str) -> float:
        with state["lock"]:
            state["started"].append(src.stem)
            state["running"] += 1
            state["max_running"] = max(state["max_running"], state["running"])
        try:
            time.sleep(state["sleep"])
            if src.stem == state["fail"]:
                raise RuntimeError(f"{src.stem} failed")
            (out_dir / f"{src.stem}.ipynb").write_text(json.dumps(injected))
            return {"01_a": 1.0, "02_b": 5.0, "03_c": 3.0, "04_d": 2.0}[src.stem]
        finally:
            with state["lock"]:
                state["running"] -= 1

    monkeypatch.setattr(notebooks, "_execute_one", execute)
    return state


def test_parallel_run_writes_every_notebook_in_chapter_order(fake_runner: dict[str, Any],
                                                             tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = notebooks.run(out=out, jobs=2)
    assert [p.name for p in paths] == ["01_a.ipynb", "02_b.ipynb", "03_c.ipynb", "04_d.ipynb"]
    assert all(p.exists() for p in paths)
    assert fake_runner["max_running"] == 2
    durations = json.loads((out / ".durations.json").read_text())
    assert durations == {"01_a": 1.0, "02_b": 5.0, "03_c": 3.0, "04_d": 2.0}


def test_longest_chapter_of_the_previous_run_starts_first(fake_runner: dict[str, Any],
                                                          tmp_path: Path) -> None:
    out = tmp_path / "out"
    notebooks.run(out=out, jobs=1)  # first run: chapter order, records durations
    assert fake_runner["started"] == ["01_a", "02_b", "03_c", "04_d"]
    fake_runner["started"].clear()
    notebooks.run(out=out, jobs=1)
    assert fake_runner["started"] == ["02_b", "03_c", "04_d", "01_a"]


def test_a_failure_stops_new_starts_and_is_raised(fake_runner: dict[str, Any],
                                                  tmp_path: Path) -> None:
    fake_runner["fail"] = "01_a"
    with pytest.raises(RuntimeError, match="01_a failed"):
        notebooks.run(out=tmp_path / "out", jobs=2)
    # 01_a and 02_b start together; 01_a fails first... 03_c may have started only if 02_b
    # had finished before the failure was seen: it cannot, both sleep the same time
    assert "04_d" not in fake_runner["started"]


def test_unreadable_durations_are_ignored(fake_runner: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".durations.json").write_text("{not json")
    notebooks.run(out=out, jobs=1)
    assert fake_runner["started"] == ["01_a", "02_b", "03_c", "04_d"]


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True])
def test_jobs_must_be_a_positive_int(jobs: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="jobs: expected a positive int"):
        notebooks.run(out=tmp_path, jobs=jobs)


def test_cli_refuses_zero_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        notebooks.main(["--jobs", "0", "--check"])
    assert "--jobs 0" in capsys.readouterr().err


def test_models_train_beside_the_chapters_that_do_not_need_them(
        fake_runner: dict[str, Any], tmp_path: Path, isolated_cache: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``models=True``: the manifest's missing models train in spawned processes on the run's
    cores, and a chapter starts only once every model it loads is in the cache."""
    from dataclasses import replace

    from isoclip.studies import manifest as mf
    from isoclip.training import embedded

    world = replace(embedded.DEFAULT_WORLD, n_train_per_class=4)
    train = replace(embedded.DEFAULT_TRAIN, steps=3, batch_size=16, checkpoint_fracs=(0.0, 1.0))
    models = [mf.spec("tiny-a", world, train, used_by=("02_b",)),
              mf.spec("tiny-b", world, replace(train, seed=1), used_by=("03_c", "04_d"))]
    monkeypatch.setattr(mf, "MODELS", models)
    keys = {m.name: mf.cache_key(m) for m in models}
    need = {"02_b": ["tiny-a"], "03_c": ["tiny-b"], "04_d": ["tiny-b"]}
    seen: dict[str, list[bool]] = {}
    execute = notebooks._execute_one

    def checking(src: Path, *args: Any) -> float:
        seen[src.stem] = [mf.is_cached(keys[n]) for n in need.get(src.stem, [])]
        return execute(src, *args)

    monkeypatch.setattr(notebooks, "_execute_one", checking)
    (tmp_path / "out").mkdir()  # long chapters: without their needs they would start first
    (tmp_path / "out" / ".durations.json").write_text(
        json.dumps({"02_b": 100, "03_c": 90, "04_d": 80}))
    notebooks.run(out=tmp_path / "out", jobs=2, models=True)
    assert all(all(v) for v in seen.values()) and set(seen) == {"01_a", "02_b", "03_c", "04_d"}
    assert not mf.missing()
    out = capsys.readouterr().out
    assert "training 2 beside the notebooks on 2 core(s)" in out
    assert "tiny-a: trained in" in out and "tiny-b: trained in" in out
    durations = json.loads((tmp_path / "out" / ".durations.json").read_text())
    assert {"model:tiny-a", "model:tiny-b"} <= set(durations)

    seen.clear()  # everything cached: no training, every chapter runs
    notebooks.run(out=tmp_path / "out", jobs=2, models=True)
    assert "training 0 beside" in capsys.readouterr().out and len(seen) == 4
