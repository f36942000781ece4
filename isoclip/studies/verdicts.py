"""The verdict rules of the claims page and the chapters, with their thresholds, in one place.

A chapter turns a measurement into a word ("raises", "reproduces", "met", "about equal to")
by calling this module, so one rule gives one word everywhere and
``tests/test_verdicts.py`` pins every rule on hand-made inputs, boundaries included. The
thresholds are named constants; each says why it has its value.

**Intervals.** A change is judged from the 95 % paired bootstrap interval ``[lo, hi]`` of
``method - baseline`` over the same queries or images
(:func:`isoclip.evaluate.stats.paired_bootstrap`), never from the sign of the point estimate:
:func:`significant` is true when the interval excludes 0, and :func:`change` names the
direction.

**Scope.** A verdict is a statement about the model it was measured on. The book's default is
a tiny open_clip model trained from scratch on synthetic data, not a pretrained CLIP; a claim
that does not reproduce on it is not refuted for real CLIPs. :func:`scope` gives the phrase
("on the tiny model trained here", "on ViT-B-32 (openai)") that the chapters put into every
verdict sentence, and the claims page's column says the same.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from isoclip.common.types import Modality, check_modality
from isoclip.method.bands import PAPER_BANDS, Band, paper_scaled_band

__all__ = [
    "ABOUT_EQUAL_COSINE",
    "ABOUT_EQUAL_POINTS",
    "EARLY_PEAK_FRACTION",
    "GAP_CLOSED_FRACTION",
    "GAP_NARROWED_FRACTION",
    "GOAL_GAP_TO_ORACLE",
    "MIN_GAIN",
    "NEAR_CEILING_HEADROOM",
    "NOTABLE_GAIN",
    "PEAK_MIN_DROP",
    "Change",
    "InversionCurve",
    "PaperBand",
    "about_equal",
    "best_region",
    "change",
    "change_of_accuracy",
    "closes_gap",
    "compare_intervals",
    "flatter_middle",
    "fmt_delta",
    "goal_met",
    "inversion_curve",
    "loss_minimum_at_trained_gap",
    "meets_target",
    "middle_band_verdict",
    "narrows_gap",
    "near_ceiling",
    "paper_band",
    "reproduces",
    "scope",
    "significant",
]

# ---------------------------------------------------------------------------------------------
# thresholds

#: mAP points: the goal of a label-free band rule is to land within this of the best band of
#: the grid (the oracle, chosen with the test labels). One point is less than half of the
#: smallest average gain IsoCLIP reports over CLIP (2.3 mAP, OpenCLIP ViT-B/16 DataComp-XL
#: image→image, ``isoclip/data/reference/paper_numbers.csv``), so a rule that meets the goal
#: keeps most of any gain the oracle finds.
GOAL_GAP_TO_ORACLE = 1.0

#: Percentage points (accuracy, mAP, V-measure x 100): two single-run numbers without an
#: interval closer than this are "about equal". One point is 1 % of the metric's range and the
#: resolution of the papers' tables (one decimal of averages whose differences are points).
ABOUT_EQUAL_POINTS = 1.0

#: Cosine units: two mean cosines closer than this are "about equal"; 0.02 is 1 % of a
#: cosine's range [-1, 1], the same relative resolution as :data:`ABOUT_EQUAL_POINTS`.
ABOUT_EQUAL_COSINE = 0.02

#: mAP points: a band gain below this is no gain. Bands that differ only in ties and float
#: round-off differ by about 1e-2 mAP (the float32 evaluator against the float64 band sweep:
#: at most 7e-3 on the default, ``benchmarks/band_sweep.py``); 0.1 is ten times that.
MIN_GAIN = 0.1

#: mAP points: a gain "of a point or more", the size worth reporting on the tiny models: equal
#: to :data:`ABOUT_EQUAL_POINTS`, below which two numbers are read as about equal.
NOTABLE_GAIN = ABOUT_EQUAL_POINTS

#: mAP points of headroom below 100: with less, the gains the papers report for text→text
#: (3.0-4.8 mAP for IsoCLIP, 1.9-3.6 for OVI, reference CSV) could not show, so a missing gain
#: says little.
NEAR_CEILING_HEADROOM = 5.0

#: Fraction of the optimisation steps: an inversion's best snapshot within this first part is an
#: "early" peak. Cross the Gap's poster shows OTI's mAP peaking around step 17 of 150 (11 %);
#: a quarter allows for the snapshot grid while excluding a curve that is still rising.
EARLY_PEAK_FRACTION = 0.25

#: mAP points: an early peak must also lie more than this above the last snapshot; a smaller
#: drop is a plateau, within the size of snapshot-to-snapshot changes on the tiny models.
PEAK_MIN_DROP = 0.5

#: A gap "narrows" (and a loss-optimal shift "closes" it) when it falls below this fraction of
#: the reference gap: the papers' claims are about closing the gap, so a reduction has to be at
#: least half to count, not a drift of the centroid distance.
GAP_NARROWED_FRACTION = 0.5

#: Training with the largest temperature "closes" the gap when its gap is below this fraction of
#: the gap at the smallest temperature: the claim is that large temperatures bring the
#: modalities together, so three quarters of the gap must go, a stricter reading than
#: :data:`GAP_NARROWED_FRACTION` because it compares the two ends of a temperature sweep.
GAP_CLOSED_FRACTION = 0.25

# ---------------------------------------------------------------------------------------------
# scope

#: The phrase for the embedded default: a tiny open_clip model trained from scratch here.
_TINY_SCOPE = "on the tiny model trained here"


def scope(model: str = "embedded", pretrained: str | None = None) -> str:
    """The phrase naming the model a verdict was measured on.

    Args:
        model: ``"embedded"`` (the tiny model the book trains) or an open_clip model name.
        pretrained: the open_clip pretrained tag or checkpoint path (None: random init).

    Returns:
        ``"on the tiny model trained here"`` for the embedded model, else e.g.
        ``"on ViT-B-32 (openai)"`` or ``"on ViT-B-32 (random init)"``.
    """
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model: expected a model name, got {model!r}")
    if model == "embedded":
        return _TINY_SCOPE
    return f"on {model} ({pretrained or 'random init'})"


# ---------------------------------------------------------------------------------------------
# paired intervals

#: The direction of a paired change, read off its interval.
Change = Literal["raises", "lowers", "does not measurably change"]


def _interval(lo: float, hi: float) -> tuple[float, float]:
    lo, hi = float(lo), float(hi)
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise ValueError(f"lo, hi: expected an interval lo <= hi, got [{lo}, {hi}]")
    return lo, hi


def significant(lo: float, hi: float) -> bool:
    """True when the paired interval ``[lo, hi]`` excludes 0 (an endpoint at 0 does not)."""
    lo, hi = _interval(lo, hi)
    return lo > 0 or hi < 0


def change(lo: float, hi: float) -> Change:
    """``"raises"`` (lo > 0), ``"lowers"`` (hi < 0) or ``"does not measurably change"``: what
    the method does to the metric, from the interval of ``method - baseline``."""
    lo, hi = _interval(lo, hi)
    return "raises" if lo > 0 else ("lowers" if hi < 0 else "does not measurably change")


def change_of_accuracy(lo: float, hi: float) -> Literal["rises", "drops",
                                                        "does not measurably change"]:
    """:func:`change` worded for the metric as subject ("accuracy rises / drops")."""
    return {"raises": "rises", "lowers": "drops",  # type: ignore[return-value]
            "does not measurably change": "does not measurably change"}[change(lo, hi)]


def reproduces(holds: bool) -> Literal["reproduces", "does not reproduce"]:
    """The word for a paper's claim that holds (or not) on the model measured."""
    return "reproduces" if holds else "does not reproduce"


def compare_intervals(larger: tuple[float, float], smaller: tuple[float, float]
                      ) -> Literal["holds", "is reversed",
                                   "cannot be confirmed (the two intervals overlap)"]:
    """A claim "the effect is larger for A than for B", from their two intervals.

    Args:
        larger: ``(lo, hi)`` of the condition the claim says has the larger effect.
        smaller: ``(lo, hi)`` of the other condition.

    Returns:
        ``"holds"`` when A's interval lies entirely above B's, ``"is reversed"`` when entirely
        below, else ``"cannot be confirmed (the two intervals overlap)"``.
    """
    a_lo, a_hi = _interval(*larger)
    b_lo, b_hi = _interval(*smaller)
    if a_lo > b_hi:
        return "holds"
    if a_hi < b_lo:
        return "is reversed"
    return "cannot be confirmed (the two intervals overlap)"


def fmt_delta(delta: float, lo: float, hi: float, decimals: int = 2,
              missing: str = "n/a") -> str:
    """``"+1.23 [+0.45, +2.01]"``: a paired difference with its interval; ``missing`` when
    ``delta`` is NaN (the baseline row of a table)."""
    if math.isnan(float(delta)):
        return missing
    f = f"{{:+.{decimals}f}}"
    return f"{f.format(delta)} [{f.format(lo)}, {f.format(hi)}]"


# ---------------------------------------------------------------------------------------------
# single numbers

def about_equal(value: float, reference: float, tol: float
                ) -> Literal["higher than", "lower than", "about equal to"]:
    """``value`` compared with ``reference``: "about equal to" within ``tol`` (inclusive).

    Use :data:`ABOUT_EQUAL_POINTS` for percentages and :data:`ABOUT_EQUAL_COSINE` for cosines.
    """
    if tol < 0:
        raise ValueError(f"tol: expected a tolerance >= 0, got {tol!r}")
    if value > reference + tol:
        return "higher than"
    if value < reference - tol:
        return "lower than"
    return "about equal to"


def goal_met(gap_to_oracle: float) -> bool:
    """A label-free band choice is within :data:`GOAL_GAP_TO_ORACLE` mAP of the oracle
    (inclusive)."""
    if math.isnan(float(gap_to_oracle)):
        raise ValueError("gap_to_oracle: NaN (no band was chosen)")
    return float(gap_to_oracle) <= GOAL_GAP_TO_ORACLE


def near_ceiling(baseline: float) -> bool:
    """Less than :data:`NEAR_CEILING_HEADROOM` points between ``baseline`` (percent) and 100."""
    return 100.0 - float(baseline) < NEAR_CEILING_HEADROOM


def meets_target(value: float, *, at_most: float | None = None, at_least: float | None = None
                 ) -> Literal["meets", "misses"]:
    """Whether ``value`` meets a target: ``value <= at_most`` or ``value >= at_least``."""
    if (at_most is None) == (at_least is None):
        raise ValueError("give exactly one of at_most and at_least")
    ok = value <= at_most if at_most is not None else value >= at_least  # type: ignore[operator]
    return "meets" if ok else "misses"


# ---------------------------------------------------------------------------------------------
# the modality gap

def narrows_gap(gap: float, reference: float) -> bool:
    """``gap`` is below :data:`GAP_NARROWED_FRACTION` of ``reference`` (e.g. CLIP's gap)."""
    return float(gap) < GAP_NARROWED_FRACTION * float(reference)


def closes_gap(gap_at_largest_tau: float, gap_at_smallest_tau: float) -> bool:
    """The largest temperature's gap is below :data:`GAP_CLOSED_FRACTION` of the smallest's."""
    return float(gap_at_largest_tau) < GAP_CLOSED_FRACTION * float(gap_at_smallest_tau)


def loss_minimum_at_trained_gap(best_shift: float, shift_step: float) -> bool:
    """Liang's shift: the loss is lowest at the trained gap (shift λ = 0) to the grid's
    resolution, i.e. the best λ is within half a grid step of 0."""
    if shift_step <= 0:
        raise ValueError(f"shift_step: expected a grid step > 0, got {shift_step!r}")
    return abs(float(best_shift)) <= shift_step / 2 + 1e-9


# ---------------------------------------------------------------------------------------------
# the spectrum and the bands

def flatter_middle(decay_rates: Mapping[str, float]) -> bool:
    """The middle band decays more slowly than both ends (keys ``top``, ``mid``, ``bottom``:
    median decay of log sigma per index, :func:`isoclip.selection.analysis.region_decay_rates`)."""
    return decay_rates["mid"] < min(decay_rates["top"], decay_rates["bottom"])


def best_region(values: Mapping[str, float]) -> str:
    """The key with the largest value, the first one on ties (``pandas.Series.idxmax``)."""
    if not values:
        raise ValueError("values: expected at least one region")
    keys = list(values)
    return keys[int(np.argmax([float(values[k]) for k in keys]))]


def middle_band_verdict(map_by_region: Mapping[str, float]) -> str:
    """The paper's band-figure claim (the middle band alone gives the best mAP) on the mAP of
    the ``top``, ``middle`` and ``bottom`` bands: ``"reproduced: the middle band has the highest
    mAP"`` or ``"not reproduced: the <region> band has the highest mAP"``."""
    best = best_region(map_by_region)
    if best == "middle":
        return "reproduced: the middle band has the highest mAP"
    return f"not reproduced: the {best} band has the highest mAP"


@dataclass(frozen=True)
class PaperBand:
    """The band the chapters call "paper" for a model of rank r.

    Attributes:
        band: the band.
        published: True when it is the paper's own band for this backbone and task at this
            rank (``PAPER_BANDS``); False when it is the ViT-B/32 band of the task scaled to r
            (:func:`isoclip.method.bands.paper_scaled_band`), a reference, not a choice made for
            the model.
    """

    band: Band
    published: bool

    @property
    def label(self) -> Literal["paper", "paper-scaled"]:
        """``"paper"`` or ``"paper-scaled"``, the name of the band in tables and legends."""
        return "paper" if self.published else "paper-scaled"


def paper_band(model: str, pretrained: str | None, task: Modality, r: int) -> PaperBand:
    """The paper's band for ``(model, pretrained, task)`` when it has one at rank ``r``, else the
    ViT-B/32 band of ``task`` scaled to ``r`` (always so for the tiny models).

    Args:
        model, pretrained: open_clip names as in ``PAPER_BANDS`` (``"embedded"``: the tiny model).
        task: ``"image"`` (image→image band) or ``"text"``.
        r: rank of Psi of the model at hand.
    """
    check_modality("task", task)
    if isinstance(r, bool) or not isinstance(r, int) or r < 2:
        raise ValueError(f"r: expected the rank of Psi, an int >= 2, got {r!r}")
    key = (model, pretrained or "", task)
    if key in PAPER_BANDS and PAPER_BANDS[key][2] == r:
        k_top, k_bottom, _ = PAPER_BANDS[key]
        return PaperBand(Band(k_top, k_bottom), published=True)
    return PaperBand(paper_scaled_band(r, task=task), published=False)


# ---------------------------------------------------------------------------------------------
# inversion along its optimisation

@dataclass(frozen=True)
class InversionCurve:
    """mAP of an inversion's snapshots along the optimisation, read as a shape.

    Attributes:
        best_step, best_map: the best snapshot (the first one on ties).
        last_step, last_map: the last snapshot.
        drop: ``best_map - last_map`` (>= 0).
        early_peak: the best snapshot lies in the first :data:`EARLY_PEAK_FRACTION` of the
            steps and more than :data:`PEAK_MIN_DROP` above the last (Cross the Gap's early
            peak).
        shape: ``"rises up to the last step"``, ``"peaks at step k and then declines by x
            mAP"`` or ``"plateaus: its best snapshot, step k, is within 0.5 mAP of the last"``.
    """

    best_step: int
    best_map: float
    last_step: int
    last_map: float
    drop: float
    early_peak: bool
    shape: str


def inversion_curve(steps: Sequence[int], maps: Sequence[float]) -> InversionCurve:
    """Read the snapshots ``steps`` [K] (increasing) and their ``maps`` [K] as a curve."""
    s = [int(k) for k in steps]
    m = [float(v) for v in maps]
    if not s or len(s) != len(m):
        raise ValueError(f"steps, maps: expected two non-empty sequences of one length, got "
                         f"{len(s)} and {len(m)}")
    if any(b <= a for a, b in itertools.pairwise(s)):
        raise ValueError(f"steps: expected increasing snapshot steps, got {s}")
    i = int(np.argmax(m))
    best_step, best_map, last_step, last_map = s[i], m[i], s[-1], m[-1]
    drop = best_map - last_map
    if best_step == last_step:
        shape = "rises up to the last step"
    elif drop > PEAK_MIN_DROP:
        shape = f"peaks at step {best_step} and then declines by {drop:.1f} mAP"
    else:
        shape = (f"plateaus: its best snapshot, step {best_step}, is within {PEAK_MIN_DROP:g} "
                 "mAP of the last")
    early = best_step <= EARLY_PEAK_FRACTION * last_step and drop > PEAK_MIN_DROP
    return InversionCurve(best_step, best_map, last_step, last_map, drop, early, shape)
