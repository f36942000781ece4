"""What the project promises in a hostile environment and to a user who makes mistakes.

Each group of tests below is one promise (README, "Reliability"):

1. A cache that cannot be written loses no work: the result is returned, with one warning.
2. No file read by the project runs code: cache payloads and checkpoints are read with
   ``torch.load(weights_only=True)``, revisited Oxford/Paris ``gnd_*.pkl`` through an
   unpickler that allows only builtin containers and numpy arrays.
3. ``make reproduce`` checks its arguments before it deletes, downloads or runs anything.
4. Notebook parameters are validated against each notebook's ``parameters`` cell (names and
   types) before any notebook runs; ``TrainConfig`` checks the types of its fields.
5. A corrupt image or checkpoint gives an error naming the file and what to do.
6. Concurrent fills of one cache key build once; interrupted writes leave nothing behind.
7. No silently wrong result: an SVD must belong to its projectors, projectors must be
   floating point, retrieval metrics hold at any feature scale, containers reject inputs of
   the wrong kind.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from isoclip.common import cache as icache

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


class _RunsCode:
    """A pickled object whose unpickling runs a shell command (writes a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _plant_cache_entry(kind: str, material: dict, payload: object, root: Path) -> Path:
    """Write a cache entry exactly as an attacker with write access to the cache would: a
    payload and a manifest whose sha256 matches it."""
    key = icache.stable_hash({"format": icache.CACHE_FORMAT_VERSION, **material})
    pt, man = icache.entry_paths(kind, key, root)
    pt.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, pt)
    man.write_text(json.dumps({"key": key, "sha256": icache.file_sha256(pt),
                               "format": icache.CACHE_FORMAT_VERSION, "material": material}))
    return pt


# ---------------------------------------------------------------------------------------------
# 1. nothing is lost when the cache cannot be written

def test_unwritable_cache_returns_the_result_and_warns_once(tmp_path: Path) -> None:
    """A cache folder that cannot be created (its parent is a file) loses no work: each
    result is returned and a single warning names the folder."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    root = blocker / "cache"
    calls: list[int] = []

    def build() -> dict[str, torch.Tensor]:
        calls.append(1)
        return {"w": torch.arange(3.0)}

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = icache.cached("checkpoints", {"k": 1}, build, root=root)
        second = icache.cached("features", {"k": 2}, build, root=root)
    assert torch.equal(first["w"], torch.arange(3.0)) and torch.equal(second["w"], first["w"])
    assert len(calls) == 2
    msgs = [str(w.message) for w in caught if "not writable" in str(w.message)]
    assert len(msgs) == 1 and str(root) in msgs[0] and "not cached" in msgs[0]


def test_read_only_cache_write_failure_keeps_the_trained_result(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """A write that fails with EROFS (read-only file system) after the build still returns
    the build's result."""
    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(icache.os, "replace", read_only)
    with pytest.warns(UserWarning, match="not writable"):
        out = icache.cached("checkpoints", {"k": "ro"}, lambda: {"x": 7}, root=tmp_path / "c")
    assert out == {"x": 7}
    assert not list((tmp_path / "c").rglob("*.tmp"))


def test_corrupt_entry_that_cannot_be_deleted_still_gives_the_result(tmp_path: Path,
                                                                      monkeypatch) -> None:
    """A corrupt entry that cannot be removed is rebuilt and returned, with a warning."""
    root = tmp_path / "c"
    pt = _plant_cache_entry("features", {"k": 3}, {"x": 1}, root)
    pt.write_bytes(b"garbage")  # no longer matches its manifest
    real_unlink = Path.unlink

    def refuse(self: Path, missing_ok: bool = False) -> None:
        if self.parent == pt.parent:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = icache.cached("features", {"k": 3}, lambda: {"x": 2}, root=root)
    assert out == {"x": 2}
    assert any(str(pt) in str(w.message) for w in caught)


# ---------------------------------------------------------------------------------------------
# 2. no code execution from data files

def test_planted_cache_payload_is_refused_without_running_it(tmp_path: Path) -> None:
    """A cache payload holding anything but tensors, numbers, strings and containers is
    refused with an error naming the file; its code never runs."""
    marker = tmp_path / "pwned"
    root = tmp_path / "c"
    pt = _plant_cache_entry("checkpoints", {"k": "evil"}, {"state_dict": _RunsCode(marker)},
                            root)
    with pytest.raises(pickle.UnpicklingError, match="refus") as err:
        icache.cached("checkpoints", {"k": "evil"}, lambda: {"fresh": 1}, root=root)
    assert str(pt) in str(err.value)
    assert not marker.exists()


def test_planted_gnd_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    """A revisited Oxford/Paris ``gnd_*.pkl`` that would call anything but builtin
    containers and numpy arrays is refused; its code never runs."""
    from isoclip.data import DatasetFormatError, load_retrieval_dataset
    from isoclip.data.fakes import make_fake_dataset

    marker = tmp_path / "pwned"
    folder = make_fake_dataset("roxford5k", tmp_path / "data", image_size=8)
    (folder / "gnd_roxford5k.pkl").write_bytes(pickle.dumps(
        {"imlist": [], "qimlist": [], "gnd": [_RunsCode(marker)]}))
    with pytest.raises(DatasetFormatError, match="refused.*posix.system") as err:
        load_retrieval_dataset("roxford5k", tmp_path / "data")
    assert "gnd_roxford5k.pkl" in str(err.value)
    assert not marker.exists()


def test_official_gnd_layout_with_numpy_arrays_still_reads(tmp_path: Path) -> None:
    """The restricted unpickler reads the official layout: lists, or numpy arrays and
    scalars, pickled with any protocol."""
    from isoclip.data import load_retrieval_dataset
    from isoclip.data.fakes import make_fake_dataset

    folder = make_fake_dataset("rparis6k", tmp_path, n_classes=2, per_class=2, image_size=8)
    path = folder / "gnd_rparis6k.pkl"
    cfg = pickle.loads(path.read_bytes())  # the test's own file: trusted
    for g in cfg["gnd"]:
        g.update({"easy": np.asarray(g["easy"], np.int64), "bbx": np.asarray(g["bbx"]),
                  "junk": [np.int64(j) for j in g["junk"]]})
    for protocol in (2, 4, 5):
        path.write_bytes(pickle.dumps(cfg, protocol=protocol))
        data = load_retrieval_dataset("rparis6k", tmp_path)
        assert data.gnd is not None and data.gnd[0]["easy"].tolist() == [1]


def test_planted_checkpoint_is_refused_without_running_it(tmp_path: Path) -> None:
    """A checkpoint passed as ``pretrained`` is loaded with weights_only=True: a pickled
    callable is refused with an error naming the file."""
    from isoclip.models.loading import load_model

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    torch.save({"state_dict": _RunsCode(marker)}, ckpt)
    with pytest.raises(RuntimeError, match=re.escape(str(ckpt))):
        load_model("isoclip-tiny-vit", pretrained=str(ckpt))
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# 3. make reproduce checks first

def _make_sandbox(tmp_path: Path) -> Path:
    """A copy of the Makefile in ``tmp_path/repo`` (``tools`` and ``notebooks`` linked), so
    that no make run touches the shared working tree."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    for name in ("notebooks", "tools", "pyproject.toml"):
        (repo / name).symlink_to(ROOT / name)
    return repo


def _make(repo: Path, *args: str, venv: Path | None = None,
          timeout: float = 300) -> subprocess.CompletedProcess[str]:
    venv = venv or ROOT / ".venv"
    # -o: never (re)build the venv stamp; PY/VENV: the project's interpreter
    cmd = ["make", "--no-print-directory", "-o", f"{venv}/.installed", f"VENV={venv}",
           f"PY={venv / 'bin' / 'python'}", *args]
    return subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=timeout,
                          check=False)


def _logging_venv(tmp_path: Path, log: Path, *, run_checks: bool) -> Path:
    """A venv folder whose ``python`` appends its argv to ``log`` (a JSON list per line) and
    runs nothing, except the parameter check (``--check``) when ``run_checks``, and whose
    ``jupyter-book`` appends the line ``jupyter-book``."""
    stub = tmp_path / "stub-venv"
    (stub / "bin").mkdir(parents=True)
    check = (f"if \"--check\" in sys.argv:\n    os.execv({PYTHON!r}, [{PYTHON!r}, *sys.argv[1:]])"
             if run_checks else "")
    (stub / "bin" / "python").write_text(
        f"#!{PYTHON}\nimport json, os, sys\nwith open({str(log)!r}, \"a\") as f:\n"
        f"    f.write(json.dumps(sys.argv[1:]) + \"\\n\")\n{check}\n")
    (stub / "bin" / "jupyter-book").write_text(f"#!/bin/sh\necho jupyter-book >> '{log}'\n")
    for f in (stub / "bin").iterdir():
        f.chmod(0o755)
    return stub


def test_make_reproduce_rejects_a_params_name_before_deleting_anything(tmp_path: Path) -> None:
    """``PARAMS`` must name a file of notebooks/params/: ``PARAMS='fake-vit-b-32 ../victim'``
    is refused and deletes nothing."""
    repo = _make_sandbox(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    data = tmp_path / "data"
    data.mkdir()
    mathjax = tmp_path / "tex-svg.js"
    mathjax.write_text("")  # present: make goes straight to the recipe
    res = _make(repo, "reproduce", "PARAMS=fake-vit-b-32 ../victim", f"DATA_ROOT={data}",
                f"MATHJAX={mathjax}")
    assert res.returncode != 0
    assert (victim / "precious.txt").read_text() == "keep me"
    assert "PARAMS" in res.stderr and "fake-vit-b-32" in res.stderr  # names the known sets


def test_make_reproduce_checks_data_before_downloading_mathjax(tmp_path: Path) -> None:
    """A missing ``DATA_ROOT`` folder, or ``PARAMS=default`` (a set that reads no data) with a
    ``DATA_ROOT``, fails before MathJax is fetched."""
    repo = _make_sandbox(tmp_path)
    mathjax = tmp_path / "mj" / "tex-svg.js"
    missing = _make(repo, "reproduce", "PARAMS=fake-vit-b-32",
                    f"DATA_ROOT={tmp_path / 'nowhere'}", f"MATHJAX={mathjax}")
    assert missing.returncode != 0 and "DATA_ROOT" in missing.stderr
    data = tmp_path / "data"
    data.mkdir()
    default = _make(repo, "reproduce", "PARAMS=default", f"DATA_ROOT={data}",
                    f"MATHJAX={mathjax}")
    assert default.returncode != 0 and "default" in default.stderr
    assert "reads no data" in default.stderr
    assert not mathjax.parent.exists()
    assert "npm" not in missing.stdout + default.stdout


def test_make_reproduce_passes_a_data_root_with_spaces_as_one_argument(tmp_path: Path) -> None:
    """``DATA_ROOT`` with spaces reaches the runner and the book writer as one argument,
    made absolute; the build folder is removed by its quoted name only."""
    repo = _make_sandbox(tmp_path)
    data = tmp_path / "my data"
    data.mkdir()
    log = tmp_path / "argv.jsonl"
    stub = _logging_venv(tmp_path, log, run_checks=True)
    mathjax = tmp_path / "tex-svg.js"
    mathjax.write_text("")  # present: nothing to download
    res = _make(repo, "reproduce", "PARAMS=fake-vit-b-32", f"DATA_ROOT={data}",
                f"MATHJAX={mathjax}", venv=stub)
    assert res.returncode == 0, res.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("[")]
    runs = [c for c in calls if c[:2] == ["-m", "isoclip.notebooks"] and "--check" not in c]
    assert runs and f"data_root={data}" in runs[0]
    books = [c for c in calls if c and c[0].endswith("reproduce_book.py")]
    assert books and books[0][1:] == ["_build/reproduce-fake-vit-b-32", "fake-vit-b-32",
                                      str(data)]


# ---------------------------------------------------------------------------------------------
# 4. parameters validated before any work

@pytest.fixture
def no_execution(monkeypatch):
    """Replace papermill's executor: record what would run, execute nothing."""
    import papermill

    ran: list[tuple[str, dict]] = []

    def fake_execute(src: str, dest: str, parameters: dict | None = None, **kw: object) -> None:
        ran.append((Path(src).stem, dict(parameters or {})))
        shutil.copy(src, dest)

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    saved = dict(os.environ)
    yield ran
    os.environ.clear()
    os.environ.update(saved)


def test_runner_rejects_unknown_parameters_with_close_matches(no_execution, tmp_path) -> None:
    """A misspelt ``--set`` name is an error naming the close match; nothing runs."""
    from isoclip.notebooks import main

    with pytest.raises(ValueError, match=r"train_step\b.*train_steps"):
        main(["--only", "01", "--set", "train_step=5", "--out", str(tmp_path)])
    assert no_execution == []


def test_runner_checks_types_of_every_notebook_before_the_first_runs(no_execution,
                                                                      tmp_path) -> None:
    """Values of the wrong type are rejected, naming the notebook and the expected type,
    before the first selected notebook runs (here 02's list parameter, 01 selected first)."""
    from isoclip.notebooks import main

    for bad, expected in (("train_steps=abc", "int"), ("train_steps=2.5", "int"),
                          ("train_steps=null", "int"), ("fixed_taus=0.1", "list"),
                          ("lam_step=[1]", "float"), ("fixed_taus=[0.1, x]", "float")):
        with pytest.raises(ValueError, match=f"{bad.split('=')[0]}.*{expected}"):
            main(["--only", "01", "02", "--set", bad, "--out", str(tmp_path)])
    assert no_execution == []


def test_runner_parses_numbers_like_python(no_execution, tmp_path) -> None:
    """``7e-2`` is a float (YAML 1.1 would read a string), an int is accepted for a float,
    None where the default or the comment allows it."""
    from isoclip.notebooks import main

    main(["--only", "01", "03", "--set", "nuisance=7e-2", "temperature=7e-2",
          "oti_per_class=null", "--out", str(tmp_path)])
    main(["--only", "01", "--set", "nuisance=1", "--out", str(tmp_path)])
    assert no_execution[0] == ("01_embedded_default", {
        "train_steps": 800, "train_batch_size": 256, "train_seed": 0, "world_seed": 0,
        "nuisance": 0.07, "temperature": 0.07})
    assert no_execution[1][1]["oti_per_class"] is None
    assert no_execution[2][1]["nuisance"] == 1


def test_runner_checks_parameter_files_too(no_execution, tmp_path) -> None:
    """A parameter set file with an unknown name or a wrong type is rejected, naming it."""
    from isoclip.notebooks import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("common:\n  train_steps: lots\n")
    with pytest.raises(ValueError, match=r"bad.yaml.*train_steps.*int"):
        main(["--params", str(bad), "--only", "01", "--out", str(tmp_path)])
    bad.write_text("notebooks:\n  01_embedded_default:\n    nuisanse: 0.5\n")
    with pytest.raises(ValueError, match="nuisanse.*nuisance"):
        main(["--params", str(bad), "--only", "01", "--out", str(tmp_path)])
    assert no_execution == []


def test_runner_only_needs_a_value_and_out_is_relative_to_cwd(no_execution, tmp_path,
                                                             monkeypatch) -> None:
    """``--only`` without a value is a usage error (it used to run every notebook); ``--out``
    is relative to the current directory."""
    from isoclip.notebooks import main

    with pytest.raises(SystemExit) as err:
        main(["--only", "--out", str(tmp_path)])
    assert err.value.code == 2 and no_execution == []
    monkeypatch.chdir(tmp_path)
    main(["--only", "01", "--out", "rel"])
    assert (tmp_path / "rel" / "01_embedded_default.ipynb").is_file()


@pytest.mark.parametrize("field, bad", [("steps", 2.5), ("seed", "0"), ("lr", "1e-3"),
                                        ("batch_size", True), ("temperature", "0.1"),
                                        ("model", 3), ("checkpoint_fracs", ("a",))])
def test_train_config_checks_types(field: str, bad: object) -> None:
    """TrainConfig refuses values of the wrong type, naming the field and the type."""
    from isoclip.training.trainer import TrainConfig

    with pytest.raises(TypeError, match=f"{field}: expected"):
        TrainConfig(**{field: bad})
    TrainConfig(lr=1, temperature=1, steps=np.int64(3))  # ints for floats, numpy ints


# ---------------------------------------------------------------------------------------------
# 5. corrupt files are named

def test_corrupt_image_error_names_the_file_and_the_dataset(tmp_path: Path, tiny) -> None:
    """A truncated JPEG fails with its path, its dataset and what to do."""
    from PIL import Image

    from isoclip.data.base import ImageDataset
    from isoclip.models.features import image_features

    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(good)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(bad)
    bad.write_bytes(bad.read_bytes()[:400])
    ds = ImageDataset([good, bad], [0, 0], ["x"], name="my-photos")
    with pytest.raises(OSError, match="my-photos") as err:
        image_features(tiny, ds, cache=False, progress=False)
    assert str(bad) in str(err.value) and "image 1" in str(err.value)


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    from isoclip.models.loading import load_model

    return load_model("isoclip-tiny-vit", seed=1).model.state_dict()


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_damaged_checkpoint_names_the_path_and_what_to_do(tmp_path: Path, tiny_state,
                                                          damage: str) -> None:
    """A truncated or empty checkpoint fails with its path and 'download it again'."""
    from isoclip.models.loading import load_model

    ckpt = tmp_path / "model.pt"
    torch.save(tiny_state, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:1000] if damage == "truncated" else b"")
    with pytest.raises(RuntimeError, match="again") as err:
        load_model("isoclip-tiny-vit", pretrained=ckpt)
    assert str(ckpt) in str(err.value)


def test_checkpoint_of_another_architecture_is_named(tmp_path: Path, tiny_state) -> None:
    """Weights of another architecture fail with the file, the model name and the fix."""
    from isoclip.models.loading import load_model

    ckpt = tmp_path / "tiny-vit.pt"
    torch.save(tiny_state, ckpt)
    with pytest.raises(RuntimeError, match="isoclip-tiny-vit-w96") as err:
        load_model("isoclip-tiny-vit-w96", pretrained=ckpt)
    assert str(ckpt) in str(err.value) and "architecture" in str(err.value)


def test_a_local_checkpoint_file_is_a_valid_pretrained(tmp_path: Path, tiny_state,
                                                      monkeypatch) -> None:
    """``pretrained="tiny.ckpt"`` (no known suffix, no folder) loads that file when it exists;
    a missing one is an error that names the file and the known tags."""
    from isoclip.models.loading import load_model

    monkeypatch.chdir(tmp_path)
    torch.save(tiny_state, tmp_path / "tiny.ckpt")
    bundle = load_model("isoclip-tiny-vit", pretrained="tiny.ckpt")
    for k, v in tiny_state.items():
        assert torch.equal(bundle.model.state_dict()[k], v), k
    with pytest.raises(FileNotFoundError, match="other.ckpt.*no such file.*tag"):
        load_model("isoclip-tiny-vit", pretrained="other.ckpt")


# ---------------------------------------------------------------------------------------------
# 6. concurrent fills and interrupted writes

_FILLER = textwrap.dedent("""\
    import os, sys, time
    from pathlib import Path
    from isoclip.common.cache import cached
    root, counter, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    while not go.exists():
        time.sleep(0.01)
    def build():
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(2.0)
        return {"value": 42}
    out = cached("features", {"shared": "key"}, build, root=root)
    assert out == {"value": 42}, out
    """)


def test_two_processes_on_one_key_build_once(tmp_path: Path) -> None:
    """Two processes asking for one missing key: one builds, the other waits and loads."""
    root, counter, go = tmp_path / "c", tmp_path / "calls", tmp_path / "go"
    procs = [subprocess.Popen([PYTHON, "-c", _FILLER, str(root), str(counter), str(go)],
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(1.0)  # both started (imports) before either may look at the cache
    go.write_text("")
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert len(counter.read_text().split()) == 1
    assert icache.load_verified("features", {"shared": "key"}, root) == {"value": 42}


_KILLED_WRITER = textwrap.dedent("""\
    import os, signal, sys
    from pathlib import Path
    from isoclip.common import cache
    def dies_while_writing(obj, f):
        f.write(b"half a payload")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    cache.torch.save = dies_while_writing
    cache.cached("features", {"k": "killed"}, lambda: {"v": 1}, root=Path(sys.argv[1]))
    """)


def test_a_killed_writer_leaves_no_temporary_behind(tmp_path: Path) -> None:
    """A writer killed mid-write leaves a temporary; the next fill of that key removes it,
    and temporaries of other keys are removed once stale (an hour old)."""
    root = tmp_path / "c"
    res = subprocess.run([PYTHON, "-c", _KILLED_WRITER, str(root)], capture_output=True,
                         check=False)
    assert res.returncode == -signal.SIGKILL
    folder = root / "features"
    assert [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # the crash left one
    old = folder / ".other.pt.abc123.tmp"
    fresh = folder / ".another.pt.def456.tmp"
    for p in (old, fresh):
        p.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert icache.cached("features", {"k": "killed"}, lambda: {"v": 1}, root=root) == {"v": 1}
    left = sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))
    assert left == [fresh.name]


def test_trained_model_key_is_the_file_name_on_disk(isolated_cache: Path) -> None:
    """``TrainedModel.key`` names its cache entry ``checkpoints/<key>.pt``."""
    from isoclip.data.base import ImageDataset
    from isoclip.training.trainer import TrainConfig, load_or_train

    rng = np.random.default_rng(0)
    labels = np.arange(32) % 2
    images = rng.integers(0, 255, (32, 32, 32, 3)).astype(np.uint8)
    ds = ImageDataset(images, labels, ["a", "b"], "keyed",
                      captions=[f"class {y}" for y in labels])
    cfg = TrainConfig(steps=2, batch_size=16, log_every=1, checkpoint_fracs=(1.0,))
    trained = load_or_train(ds, cfg, progress=False)
    assert (isolated_cache / "checkpoints" / f"{trained.key}.pt").is_file()


# ---------------------------------------------------------------------------------------------
# 7. no silently wrong results

def _projectors(seed: int, dtype: torch.dtype = torch.float32):
    from isoclip.method.projectors import Projectors

    g = torch.Generator().manual_seed(seed)
    return Projectors(torch.randn(12, 10, generator=g, dtype=dtype),
                      torch.randn(12, 10, generator=g, dtype=dtype))


def test_svd_of_other_projectors_is_rejected() -> None:
    """An SVD computed from other projectors of the same shape is rejected by
    iso_projectors, the sweeps and select_band; the same projectors in float64 are fine."""
    from isoclip.method.bands import Band, iso_projectors
    from isoclip.method.operator import svd
    from isoclip.selection.rules import select_band
    from isoclip.selection.sweep import sweep_bands

    P, other = _projectors(0), _projectors(1)
    wrong = svd(other)
    f = torch.randn(6, 10)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="not the SVD of these projectors"):
        iso_projectors(P, Band(2, 2), wrong)
    with pytest.raises(ValueError, match="not the SVD of these projectors"):
        sweep_bands(P, f, f, labels, labels, "image", [0, 2], [0, 2], dec=wrong)
    with pytest.raises(ValueError, match="not the SVD of these projectors"):
        select_band(P, "isotropy", dec=wrong)
    ok = iso_projectors(P.double(), Band(2, 2), svd(P))
    torch.testing.assert_close(ok.W_i, iso_projectors(P.double(), Band(2, 2)).W_i)


def test_integer_projectors_are_rejected() -> None:
    """Integer projectors are refused (they would be truncated), naming the tensor."""
    from isoclip.method.projectors import Projectors

    with pytest.raises(TypeError, match="W_i.*floating"):
        Projectors(torch.ones(4, 3, dtype=torch.int64), torch.ones(4, 3))
    with pytest.raises(TypeError, match="b_t.*floating"):
        Projectors(torch.ones(4, 3), torch.ones(4, 3), b_t=torch.ones(4, dtype=torch.int32))


def _naive_map(q: np.ndarray, g: np.ndarray, ql: np.ndarray, gl: np.ndarray) -> float:
    """mAP (percent) by its definition, in float64 from features normalised by their norm."""
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    aps = []
    for i, s in enumerate(qn @ gn.T):
        rel = gl[np.argsort(-s, kind="stable")] == ql[i]
        hits = np.cumsum(rel)
        aps.append(np.mean(hits[rel] / (np.flatnonzero(rel) + 1)))
    return 100.0 * float(np.mean(aps))


@pytest.mark.parametrize("scale", [1e19, 1e25, 1e-13, 1e-20, 1.0])
def test_retrieval_metrics_hold_at_any_feature_scale(scale: float) -> None:
    """Features whose rows have norms from 1e-20 to 1e25 (each row its own scale) give the
    mAP of a float64 reference, for float32 and float64 inputs."""
    from isoclip.evaluate.retrieval import evaluate

    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(20, 16)), rng.normal(size=(60, 16))
    ql, gl = np.arange(20) % 5, np.arange(60) % 5
    row_scale = scale * rng.uniform(0.1, 10.0, size=(60, 1))
    expected = _naive_map(q, g, ql, gl)
    for dtype in (np.float32, np.float64):
        got = evaluate(torch.from_numpy((q * scale).astype(dtype)),
                       torch.from_numpy((g * row_scale).astype(dtype)), ql, gl)["mAP"]
        assert got == pytest.approx(expected, abs=1e-4), dtype


def test_image_dataset_names_inputs_of_the_wrong_kind() -> None:
    """A str for ``images`` and non-str captions give messages saying what was expected;
    ``labels=[]`` is an empty split's labels, never blamed for its dtype."""
    from isoclip.data.base import ImageDataset, TextDataset

    with pytest.raises(TypeError, match="images: got a str.*sequence of image paths"):
        ImageDataset(images="/x.png", labels=[0], class_names=["a"], name="x")
    with pytest.raises(TypeError, match=r"captions: expected .*str.*got int"):
        ImageDataset(images=["/a.png", "/b.png"], labels=[0, 0], class_names=["a"], name="x",
                     captions=[1, 2])
    with pytest.raises(ValueError, match=r"labels: expected shape \[1\] \(one label per image") \
            as err:
        ImageDataset(images=["/a.png"], labels=[], class_names=["a"], name="x")
    assert "dtype" not in str(err.value)
    empty = ImageDataset(images=[], labels=[], class_names=["a"], name="x")  # an empty split
    assert len(empty) == 0 and empty.labels.dtype == np.int64
    with pytest.raises(TypeError, match="texts: expected str"):
        TextDataset(texts=["a", 5], labels=[0, 0], name="t")


def test_notebook_temporary_folder_is_removed_on_failure(monkeypatch, tmp_path) -> None:
    """A failing notebook leaves no temporary folder behind."""
    import papermill

    from isoclip import notebooks

    class Failed(RuntimeError):
        pass

    def failing(*args: object, **kwargs: object) -> None:
        raise Failed("cell 3 raised")

    monkeypatch.setattr(papermill, "execute_notebook", failing)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with pytest.raises(Failed):
        notebooks.main(["--only", "01", "--out", str(tmp_path / "out")])
    assert list((tmp_path / "tmp").iterdir()) == []


def test_projector_fingerprint_is_cheap_and_dtype_blind() -> None:
    """The fingerprint an SVD records ignores the storage dtype (P and P.double() match)
    and changes when any weight changes."""
    from isoclip.method.operator import projector_fingerprint

    P = _projectors(0)
    assert projector_fingerprint(P) == projector_fingerprint(P.double())
    Q = dataclasses.replace(P, W_t=P.W_t.clone())
    Q.W_t[3, 4] += 1e-6
    assert projector_fingerprint(Q) != projector_fingerprint(P)


def test_written_files_are_readable_by_others(tmp_path: Path) -> None:
    """Result files and cache entries are written through a private temporary file; the final
    file gets the usual 0644, not mkstemp's 0600 (results are committed and shared)."""
    import stat

    from isoclip.common.cache import FILE_MODE, atomic_torch_save, atomic_write_bytes

    atomic_write_bytes(tmp_path / "result.json", b"{}")
    atomic_torch_save({"x": 1}, tmp_path / "entry.pt")
    for name in ("result.json", "entry.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == FILE_MODE == 0o644
