"""The shared Modality check and the thread-pinning context manager (isoclip.common)."""

from __future__ import annotations

import pytest
import torch

from isoclip.baselines.whitening import projected
from isoclip.common.threads import torch_threads
from isoclip.common.types import MODALITIES, check_modality
from isoclip.evaluate.gap import shift_rows
from isoclip.method.projectors import Projectors
from isoclip.selection.rules import agreement_sweep
from isoclip.selection.sweep import BandScorer

P = Projectors(W_i=torch.eye(3), W_t=torch.eye(3))


def test_check_modality_accepts_both_and_names_the_argument() -> None:
    assert MODALITIES == ("image", "text")
    for m in MODALITIES:
        assert check_modality("modality", m) == m
    for bad in ("Image", "", None, 1, ["image"], "texts"):
        with pytest.raises(ValueError, match=r"^side: expected 'image' or 'text', got"):
            check_modality("side", bad)


def test_every_modality_argument_uses_the_shared_check() -> None:
    calls = [lambda: shift_rows(torch.ones(2, 3), torch.zeros(3), 0.5, "both"),
             lambda: projected(P, "both"),  # type: ignore[arg-type]
             lambda: BandScorer(P, torch.ones(2, 3), torch.ones(2, 3), "both"),  # type: ignore[arg-type]
             lambda: agreement_sweep(P, torch.ones(4, 3), torch.ones(4, 3), "both")]
    for call in calls:
        with pytest.raises(ValueError, match=r"expected 'image' or 'text', got 'both'"):
            call()


def test_torch_threads_sets_and_restores() -> None:
    before = torch.get_num_threads()
    with torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None) as n:
        assert n == before
    with pytest.raises(RuntimeError, match="boom"), torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_torch_threads_rejects_bad_counts(bad) -> None:
    before = torch.get_num_threads()
    with pytest.raises(ValueError, match=r"^n: expected an int >= 1 or None"), torch_threads(bad):
        pass
    assert torch.get_num_threads() == before
