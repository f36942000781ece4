"""The model manifest: its entries are the models the notebooks ask for (same cache keys), the
parallel training stage writes the weights an in-process training would, and notebooks that
only load fail with a message naming a missing model."""

from __future__ import annotations

import ast
import io
import shutil
from dataclasses import replace
from pathlib import Path

import jupytext
import pytest
import torch
import yaml

from isoclip.notebooks import NOTEBOOK_DIR, PARAMS_DIR
from isoclip.studies import manifest as mf
from isoclip.training import embedded, variants
from isoclip.training.trainer import (
    MODELS_ONLY_ENV,
    ModelNotTrainedError,
    load_or_train,
    train_clip,
)

#: Cache key of the book's default model before the manifest existed (the cache entry every
#: chapter loaded). If it changes, every number of the book is recomputed on a new model.
DEFAULT_KEY = "2e12ae4d7ae70d684cd2d358d7906dc6c221a138e356ffa0483eb4c9d5d2a1bb"

TINY_WORLD = replace(embedded.DEFAULT_WORLD, n_train_per_class=4)
TINY_TRAIN = replace(embedded.DEFAULT_TRAIN, steps=3, batch_size=16, checkpoint_fracs=(0.0, 1.0))


def _parameters(stem: str) -> dict:
    """A notebook's parameters as the runner injects them with the ``default`` set."""
    nb = jupytext.read(NOTEBOOK_DIR / f"{stem}.md")
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    values = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(cell.source).body
              if isinstance(n, ast.Assign)}
    sets = yaml.safe_load((PARAMS_DIR / "default.yaml").read_text())
    given = {**(sets.get("common") or {}), **((sets.get("notebooks") or {}).get(stem) or {})}
    return {**values, **{k: v for k, v in given.items() if k in values}}


def _keys() -> dict[str, str]:
    return {name: key for _, names, key in mf.unique_models() for name in names}


def test_default_model_keeps_its_cache_key() -> None:
    assert _keys()["default"] == DEFAULT_KEY


def test_every_model_a_notebook_asks_for_is_in_the_manifest() -> None:
    """The configurations built as the chapters build them (their parameters, the same
    helpers) have the manifest's cache keys."""
    keys = set(_keys().values())

    def key(world, train) -> str:
        return mf.cache_key(mf.spec("notebook", world, train))

    p = _parameters("01_embedded_default")
    world = embedded.world_config(seed=p["world_seed"], n_train_per_class=p["n_train_per_class"],
                                  nuisance=p["nuisance"])
    train = embedded.train_config(steps=p["train_steps"], batch_size=p["train_batch_size"],
                                  seed=p["train_seed"], temperature=p["temperature"])
    assert key(world, train) == DEFAULT_KEY
    p = _parameters("02_modality_gap")
    base = embedded.train_config(steps=p["train_steps"])
    asked = {key(embedded.DEFAULT_WORLD, base)}
    asked |= {key(embedded.DEFAULT_WORLD, variants.variant_config(f"clip-tau-{t:g}", base=base))
              for t in p["fixed_taus"]}
    p = _parameters("11_training_time_fixes")
    base = embedded.train_config(steps=p["train_steps"])
    asked |= {key(embedded.DEFAULT_WORLD, variants.variant_config(n, base=base))
              for n in p["variant_list"]}
    for stem in ("03_intra_modal_misalignment", "04_projector_decomposition",
                 "07_intra_modal_retrieval", "08_classification", "09_latency", "10_ablations",
                 "06_band_analysis"):
        asked.add(key(embedded.DEFAULT_WORLD,
                      embedded.train_config(steps=_parameters(stem)["train_steps"])))
    assert _parameters("05_spectrum")["model"] == "embedded"
    asked.add(key(embedded.DEFAULT_WORLD, embedded.DEFAULT_TRAIN))
    assert asked <= keys, f"not in the manifest: {asked - keys}"
    assert len(asked) == 7


def test_regime_rerun_is_the_default_model_trained_once() -> None:
    from isoclip.studies.regimes import config_from_row, load_study

    p = _parameters("13_regimes")
    _, runs = load_study(mf.ROOT / p["study_json"])
    world, train = config_from_row(runs.set_index("run").loc[p["rerun"]].to_dict())
    assert mf.cache_key(mf.spec("rerun", world, train)) == DEFAULT_KEY
    merged = [names for _, names, key in mf.unique_models() if key == DEFAULT_KEY]
    assert merged == [["default", "regime-default-learned"]]


def test_unique_models_rejects_duplicates_and_thread_conflicts() -> None:
    a = mf.spec("a", TINY_WORLD, TINY_TRAIN)
    with pytest.raises(ValueError, match="duplicate names"):
        mf.unique_models([a, mf.spec("a", TINY_WORLD, replace(TINY_TRAIN, seed=1))])
    with pytest.raises(ValueError, match="threads=2"):
        mf.unique_models([a, mf.spec("b", TINY_WORLD, TINY_TRAIN, threads=2)])
    with pytest.raises(ValueError, match="threads"):
        mf.spec("c", TINY_WORLD, TINY_TRAIN, threads=0)
    with pytest.raises(TypeError, match="TrainConfig"):
        mf.ModelSpec("d", {"steps": 3}, a.data)  # type: ignore[arg-type]


def _bytes(state: dict[str, torch.Tensor]) -> dict[str, bytes]:
    return {k: v.contiguous().numpy().tobytes() for k, v in state.items()}


def test_worker_trains_the_weights_of_an_in_process_training(isolated_cache) -> None:
    """Spawned workers (one and two threads) write exactly the weights that
    ``load_or_train`` computes in this process with the same thread count."""
    specs = [mf.spec("one", TINY_WORLD, TINY_TRAIN),
             mf.spec("two", TINY_WORLD, replace(TINY_TRAIN, seed=1), threads=2)]
    assert mf.load("one", specs) is None
    out = io.StringIO()
    results = mf.train_missing(specs, jobs=2, out=out)
    assert sorted((r["name"], r["threads"]) for r in results) == [("one", 1), ("two", 2)]
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[models] 0 of 2 cached")
    assert sum(" ETA " in line for line in lines) == 2 and lines[-1].startswith("[models] done")
    previous = torch.get_num_threads()
    try:
        for s in specs:
            torch.set_num_threads(s.threads)
            fresh = train_clip(s.data(), s.train, progress=False)
            stored = mf.load(s.name, specs)
            assert stored is not None
            assert _bytes(stored.bundle.model.state_dict()) == _bytes(fresh["state_dict"])
            assert stored.checkpoints.keys() == fresh["checkpoints"].keys()
            for step, state in fresh["checkpoints"].items():
                assert _bytes(stored.checkpoints[step]) == _bytes(state)
    finally:
        torch.set_num_threads(previous)
    again = io.StringIO()
    assert mf.train_missing(specs, jobs=2, out=again) == []
    assert "2 of 2 cached" in again.getvalue()


def test_models_only_refuses_to_train_and_names_the_model(isolated_cache,
                                                          monkeypatch) -> None:
    ds = mf.world_train_split(TINY_WORLD)
    cfg = replace(TINY_TRAIN, temperature=0.5)
    monkeypatch.setenv(MODELS_ONLY_ENV, "1")
    with pytest.raises(ModelNotTrainedError, match=r"temperature=0\.5.*make models"):
        load_or_train(ds, cfg, progress=False)
    with pytest.raises(ModelNotTrainedError, match="steps=3"):
        load_or_train(ds, cfg, progress=False, cache=False)
    assert not [p for pattern in ("*.pt", "*.json")
                for p in isolated_cache.glob(f"checkpoints/{pattern}")]  # nothing written
    monkeypatch.setenv(MODELS_ONLY_ENV, "0")
    trained = load_or_train(ds, cfg, progress=False)
    monkeypatch.setenv(MODELS_ONLY_ENV, "1")  # cached now: loads
    assert load_or_train(ds, cfg, progress=False).key == trained.key


def test_a_corrupt_entry_is_not_silently_retrained_by_load(isolated_cache) -> None:
    s = mf.spec("one", TINY_WORLD, replace(TINY_TRAIN, steps=2))
    load_or_train(s.data(), s.train, progress=False)
    pt = next((isolated_cache / "checkpoints").glob("*.pt"))
    pt.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelNotTrainedError):
        mf.load("one", [s])


def test_runner_lets_notebooks_only_load_unless_asked(monkeypatch, tmp_path: Path) -> None:
    import papermill

    from isoclip.notebooks import run

    seen: list[str | None] = []

    def fake_execute(src: str, dest: str, **kw: object) -> None:
        import os

        seen.append(os.environ.get(MODELS_ONLY_ENV))
        shutil.copy(src, dest)

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    monkeypatch.delenv(MODELS_ONLY_ENV, raising=False)
    run(only=["01"], out=tmp_path)
    run(only=["01"], out=tmp_path, train_missing=True)
    assert seen == ["1", "0"]
    import os

    assert MODELS_ONLY_ENV not in os.environ


def test_manifest_cli_lists_and_rejects_unknown_names(capsys) -> None:
    assert mf.main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert "default = regime-default-learned" in listed and DEFAULT_KEY[:12] in listed
    assert all(name in listed for name in ("clip-tau-0.01", "shared-imsep", "clip-atp-cu"))
    with pytest.raises(SystemExit):
        mf.main(["--only", "no-such-model", "--list"])
    assert "no-such-model" in capsys.readouterr().err


def test_the_emoji_model_is_declared_for_every_chapter_that_names_emoji_sets() -> None:
    """A chapter starts once the models it declares are trained (the notebook runner with
    ``--models``), so a chapter that evaluates emoji sets must declare the emoji model."""
    import re

    naming = set()
    for path in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.md")):
        code = "\n".join(c.source for c in jupytext.read(path).cells if c.cell_type == "code")
        if re.search(r"""["'](?:embedded-)?emoji(?:["'/-])""", code):  # "emoji/...", "embedded-emoji"
            naming.add(path.stem)
    assert "01_embedded_default" in naming and "07_intra_modal_retrieval" in naming
    # chapter 5 loads both embedded models through studies.spectrum.spectrum_models
    assert "spectrum_models(model" in (NOTEBOOK_DIR / "05_spectrum.md").read_text()
    assert mf.users(["emoji"]) == naming | {"05_spectrum"}
    assert mf.users(["default", "regime-default-learned"]) >= naming
