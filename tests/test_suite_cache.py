"""The suite study's result cache: a hit equals the recomputation and runs no evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from isoclip.data.emoji import EmojiConfig
from isoclip.training.trainer import TrainConfig

CFG = EmojiConfig(root=str(Path(__file__).parent / "data"), n_train_per_emoji=5)
TINY = TrainConfig(steps=6, batch_size=16, log_every=1, checkpoint_fracs=(1.0,))


def _same(a, b) -> None:
    assert [r.name for r in a] == [r.name for r in b]
    for x, y in zip(a, b):
        assert x.bands == y.bands and x.meta == y.meta and x.n_query == y.n_query
        assert x.inversion == y.inversion
        for m in x.ap:
            assert torch.allclose(x.ap[m], y.ap[m], equal_nan=True, atol=0, rtol=0)
        if x.inv_ap is not None:
            assert torch.equal(x.inv_ap, y.inv_ap) and torch.equal(x.inv_rows, y.inv_rows)


def test_cache_hit_equals_recomputation(tmp_path, monkeypatch, one_thread) -> None:
    from isoclip.studies import suite
    from isoclip.studies.suite import InversionSettings, suite_study

    monkeypatch.setenv("ISOCLIP_CACHE", str(tmp_path))
    kw = {"emoji": CFG, "emoji_train": TINY, "stride": 4, "calibration_pairs": 10,
              "inversion": InversionSettings(per_class={"emoji": {"image": 1, "text": 1}},
                                          oti_steps=2, ovi_steps=2)}
    first = suite_study(["emoji"], **kw)
    entries = sorted((tmp_path / "suite").glob("*.pt"))
    assert len(entries) == 2 * 4  # one per set and task
    fresh = suite_study(["emoji"], cache=False, **kw)
    _same(first.results, fresh.results)

    def boom(*a, **k):
        raise AssertionError("a cached set was evaluated again")

    monkeypatch.setattr(suite, "evaluate_set", boom)
    hit = suite_study(["emoji"], **kw)
    _same(first.results, hit.results)
    # another setting is another entry (and is computed)
    with pytest.raises(AssertionError, match="evaluated again"):
        suite_study(["emoji/all"], **{**kw, "stride": 2})
