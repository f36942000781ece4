"""Paper-scale inversion machinery: query budgets, per-batch resumable caching, and the
torchrun path (2 gloo processes on CPU) against the one-process run.

Random-init tiny model, a few optimisation steps, fake datasets in the official layouts.
Sockets are blocked in this process and the cache is isolated (``conftest.py``); the torchrun
subprocess talks to itself over the loopback interface only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from isoclip.baselines import inversion
from isoclip.baselines.inversion_runner import BATCH_KIND, MERGED_KIND, batch_bounds
from isoclip.common import dist
from isoclip.data.fakes import make_fake_dataset
from isoclip.data.registry import load_retrieval_dataset
from isoclip.models.features import image_features, text_features
from isoclip.studies.dataset_inversion import (
    DEFAULT_QUERIES,
    check_queries,
    invert_dataset,
    ovi_pseudo_patches,
    query_budget,
)
from isoclip.studies.inversion import invert

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("one_thread")



# ---------------------------------------------------------------------------------------------
# single-process behaviour of the collectives

def test_collectives_outside_a_process_group() -> None:
    assert not dist.is_distributed() and dist.rank() == 0 and dist.world_size() == 1
    assert dist.is_main()
    assert dist.all_gather({"a": 1}) == [{"a": 1}] and dist.gather(3) == [3]
    assert dist.broadcast("x") == "x"
    assert dist.init_distributed("cpu") == torch.device("cpu")  # no WORLD_SIZE: no group
    assert not dist.is_distributed()


def test_shard_is_round_robin_and_covers_everything() -> None:
    parts = [dist.shard(11, r, 3) for r in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert sorted(i for p in parts for i in p) == list(range(11))
    assert dist.shard(5) == list(range(5))
    with pytest.raises(ValueError, match="rank"):
        dist.shard(5, 3, 3)
    with pytest.raises(ValueError, match="device"):
        dist.init_distributed("tpu")


def test_batch_bounds() -> None:
    assert batch_bounds(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert batch_bounds(4, 4) == [(0, 4)]
    with pytest.raises(ValueError, match="batch_size"):
        batch_bounds(4, 0)


# ---------------------------------------------------------------------------------------------
# query budget

def test_query_budget_is_class_balanced_seeded_and_capped() -> None:
    labels = np.repeat(np.arange(5), [10, 10, 10, 2, 10])
    idx = query_budget(labels, 20, seed=0)
    counts = np.bincount(labels[idx.numpy()], minlength=5)
    assert counts.tolist() == [4, 4, 4, 2, 4]  # floor(20 / 5) per class, a small class gives all
    assert torch.equal(idx, idx.sort().values) and torch.equal(idx, query_budget(labels, 20, 0))
    assert not torch.equal(idx, query_budget(labels, 20, 1))
    assert torch.equal(query_budget(labels, "all", 0), torch.arange(42))
    assert torch.equal(query_budget(labels, None, 0), torch.arange(42))
    assert torch.equal(query_budget(labels, 1000, 0), torch.arange(42))
    # caption sets: one query per image (class); fewer queries than classes -> distinct classes
    one_each = np.arange(50)
    few = query_budget(one_each, 7, seed=0)
    assert len(few) == 7 and len(set(one_each[few.numpy()])) == 7
    assert check_queries(DEFAULT_QUERIES) == DEFAULT_QUERIES


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "some"])
def test_query_budget_bad_input(bad) -> None:
    with pytest.raises(ValueError, match="inversion_queries"):
        query_budget([0, 1, 1], bad, seed=0)


def test_ovi_pseudo_patches_follow_the_official_configs() -> None:
    assert ovi_pseudo_patches("ViT-B-32", "openai") == 1
    assert ovi_pseudo_patches("ViT-L-14", "openai") == 4
    assert ovi_pseudo_patches("ViT-L-14", "datacomp_xl_s13b_b90k") == 2
    assert ovi_pseudo_patches("ViT-B-16", "openai") == inversion.OVI_NUM_PSEUDO_PATCHES


# ---------------------------------------------------------------------------------------------
# an interrupted inversion resumes at the batch it was computing

class Interrupt(RuntimeError):
    pass


def test_interrupted_inversion_resumes_without_recomputing(image_targets, tiny, isolated_cache,
                                                           monkeypatch) -> None:
    targets = image_targets(tiny, 7, 3)  # 4 batches of 2, 2, 2, 1
    kw = {"steps": 3, "snapshot_steps": (0, 3), "batch_size": 2}
    reference = invert(tiny, targets, "OTI", cache=False, **kw)

    def stop_after_two(k: int) -> None:
        if k == 1:
            raise Interrupt("simulated interruption after batch 1")

    with pytest.raises(Interrupt):
        invert(tiny, targets, "OTI", on_batch=stop_after_two, **kw)
    assert len(list((isolated_cache / BATCH_KIND).glob("*.pt"))) == 2  # batches 0 and 1 kept
    assert not (isolated_cache / MERGED_KIND).exists()

    calls: list[int] = []
    real_oti = inversion.oti

    def counting_oti(*args, **kwargs):
        calls.append(kwargs["seed"] - inversion.SEED)  # seed + k identifies batch k
        return real_oti(*args, **kwargs)

    monkeypatch.setattr(inversion, "oti", counting_oti)
    resumed = invert(tiny, targets, "OTI", **kw)
    assert calls == [2, 3]  # only the unfinished batches were optimised
    assert not resumed.from_cache
    for name in ("features", "losses", "final_cos"):
        assert torch.equal(getattr(resumed, name), getattr(reference, name)), name
    assert all(torch.equal(resumed.snapshots[s], reference.snapshots[s]) for s in (0, 3))
    assert not list((isolated_cache / BATCH_KIND).glob("*"))  # merged: batch entries dropped
    assert len(list((isolated_cache / MERGED_KIND).glob("*.pt"))) == 1

    again = invert(tiny, targets, "OTI", **kw)
    assert again.from_cache and calls == [2, 3] and torch.equal(again.features,
                                                                reference.features)


_SHARING_PROCESS = r"""
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from isoclip.baselines import inversion
from isoclip.models.loading import load_model
from isoclip.studies.inversion import invert

me, other, out = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
tiny = load_model("isoclip-tiny-vit", seed=0)
gen = torch.Generator().manual_seed(3)
x = torch.randn(7, 3, tiny.image_size, tiny.image_size, generator=gen)
with torch.no_grad():
    targets = tiny.model.encode_image(x)
calls = []
real_oti = inversion.oti

def slow_oti(*args, **kwargs):  # a batch long enough for the other process to move on
    calls.append(kwargs["seed"] - inversion.SEED)
    time.sleep(1.0)
    return real_oti(*args, **kwargs)

inversion.oti = slow_oti
me.touch()
while not other.exists():  # both start the run together
    time.sleep(0.01)
res = invert(tiny, targets, "OTI", steps=3, snapshot_steps=(0, 3), batch_size=2)
torch.save({"calls": calls, "features": res.features, "losses": res.losses}, out)
"""


def test_two_processes_share_the_batches_of_one_run(image_targets, tiny, isolated_cache,
                                                     tmp_path) -> None:
    """Two processes asking for the same inversion at once (two chapters of a parallel build)
    compute each batch once between them, and both return the one-process result."""
    targets = image_targets(tiny, 7, 3)  # the processes' targets: 4 batches of 2, 2, 2, 1
    reference = invert(tiny, targets, "OTI", cache=False, steps=3, snapshot_steps=(0, 3),
                       batch_size=2)
    env = {**os.environ, "ISOCLIP_CACHE": str(isolated_cache), "OMP_NUM_THREADS": "1"}
    ready = [tmp_path / "ready0", tmp_path / "ready1"]
    outs = [tmp_path / "out0.pt", tmp_path / "out1.pt"]
    procs = [subprocess.Popen([sys.executable, "-c", _SHARING_PROCESS, str(ready[i]),
                               str(ready[1 - i]), str(outs[i])], env=env, cwd=ROOT)
             for i in (0, 1)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    runs = [torch.load(o, weights_only=True) for o in outs]
    calls = [set(r["calls"]) for r in runs]
    assert calls[0] | calls[1] == {0, 1, 2, 3}
    assert not calls[0] & calls[1]  # no batch computed twice
    assert calls[0] and calls[1]  # both worked
    for r in runs:
        assert torch.equal(r["features"], reference.features)
        assert torch.equal(r["losses"], reference.losses)
    assert not list((isolated_cache / BATCH_KIND).glob("*"))  # merged: batch entries dropped


# ---------------------------------------------------------------------------------------------
# torchrun, 2 gloo processes == 1 process

def _torchrun_two_processes(tmp_path: Path, command: str, *options: str) -> tuple[Path, Path]:
    """``torchrun --nproc-per-node 2 -m isoclip.distributed <command>`` with the random-init
    tiny model on fake cub2011 (9 images) and flickr30k_text (4 images); returns the data root
    and the cache the two processes filled."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        torchrun = Path(shutil.which("torchrun") or "torchrun")
    data_root = tmp_path / "data"
    make_fake_dataset("cub2011", data_root, n_classes=3, per_class=3, image_size=32)
    make_fake_dataset("flickr30k_text", data_root, n_classes=4, per_class=1)
    cache = tmp_path / "cache-2proc"
    env = {**os.environ, "ISOCLIP_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "isoclip.distributed",
           command, "--model", "isoclip-tiny-vit", "--pretrained", "none",
           "--data-root", str(data_root), "--datasets", "cub2011",
           "--text-datasets", "flickr30k_text", "--no-progress", "--feature-batch-size", "2",
           *options]
    out = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "on 2 process(es)" in out.stdout
    return data_root, cache


def test_torchrun_two_processes_equal_one_process(tiny, tmp_path, monkeypatch) -> None:
    inv = {"oti_steps": 3, "ovi_steps": 3, "inversion_batch_size": 2}
    data_root, cache = _torchrun_two_processes(
        tmp_path, "invert", "--queries", "all",
        *[a for k, v in inv.items() for a in (f"--{k.replace('_', '-')}", str(v))])
    assert not list((cache / BATCH_KIND).glob("*"))  # merged by rank 0, batches dropped

    # one process, this cache: the torchrun run's entries are hits and equal a fresh run
    monkeypatch.setenv("ISOCLIP_CACHE", str(cache))
    for name, extract in (("cub2011", image_features), ("flickr30k_text", text_features)):
        data = load_retrieval_dataset(name, data_root)
        cached = extract(tiny, data.query, batch_size=2, progress=False)
        fresh = extract(tiny, data.query, batch_size=2, cache=False, progress=False)
        assert torch.equal(cached, fresh), name
        kw = {"queries": "all", "steps": 3, "batch_size": 2, "feature_batch_size": 2}
        two = invert_dataset(tiny, data, **kw)
        one = invert_dataset(tiny, data, cache=False, **kw)
        assert two.inverted.from_cache, f"{name}: the chapters' key differs from torchrun's"
        assert two.method == ("OTI" if name == "cub2011" else "OVI")
        assert len(two.subset) == len(data.query)
        for field in ("features", "losses", "final_cos"):
            assert torch.equal(getattr(two.inverted, field), getattr(one.inverted, field)), \
                (name, field)


def test_torchrun_feature_extraction_equals_one_process(tiny, tmp_path, monkeypatch) -> None:
    """``features``: both splits, projected and pre-projection, sharded over 2 gloo processes;
    rank 0 writes entries that the one-process chapters hit, equal to a fresh extraction."""
    data_root, cache = _torchrun_two_processes(tmp_path, "features")
    entries = sorted((cache / "features").glob("*.pt"))
    # cub2011 is all -> all (one split), flickr30k_text has a query and a gallery split
    assert len(entries) == 2 * (1 + 2)
    monkeypatch.setenv("ISOCLIP_CACHE", str(cache))
    for name, extract in (("cub2011", image_features), ("flickr30k_text", text_features)):
        data = load_retrieval_dataset(name, data_root)
        for split in {id(data.query): data.query, id(data.gallery): data.gallery}.values():
            for kind in ("projected", "preproj"):
                cached = extract(tiny, split, kind, batch_size=2, progress=False)
                fresh = extract(tiny, split, kind, batch_size=2, cache=False, progress=False)
                assert torch.equal(cached, fresh), (name, kind)
    assert sorted((cache / "features").glob("*.pt")) == entries  # every read was a hit


def test_distributed_options_default_to_the_parameter_set(tmp_path) -> None:
    """The query budget and the inversion settings come from the set's common section (what
    the chapters read), command-line options override them."""
    from isoclip.distributed import _parser, _settings

    p = tmp_path / "set.yaml"
    p.write_text("common:\n  model: ViT-B-32\n  pretrained: null\n  datasets: [cub2011, dtd]\n"
                 "  text_datasets: [coco_text]\n  inversion_queries: 7\n  oti_steps: 5\n")
    s = _settings(_parser().parse_args(["invert", "--params", str(p), "--data-root", "x"]))
    assert s == {"model": "ViT-B-32", "pretrained": None, "datasets": ["cub2011", "dtd"],
                 "text_datasets": ["coco_text"], "inversion_queries": 7, "oti_steps": 5}
    s = _settings(_parser().parse_args(["invert", "--params", str(p), "--data-root", "x",
                                        "--queries", "all", "--datasets", "dtd"]))
    assert s["inversion_queries"] == "all" and s["datasets"] == "dtd"
    with pytest.raises(SystemExit):
        _parser().parse_args(["invert", "--data-root", "x", "--queries", "some"])
