"""One figure style for the whole book, and the figures more than one chapter draws."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from isoclip.data.base import ImageDataset

#: Colours by method, so CLIP / OTI / OVI / IsoCLIP look the same in every chapter.
METHOD_COLOURS = {
    "CLIP": "#4C72B0",
    "OTI": "#DD8452",
    "OVI": "#DD8452",
    "IsoCLIP": "#55A868",
    "whitening": "#8172B3",
    "pre-projection": "#937860",
}


def use_style() -> None:
    """Set the book's matplotlib/seaborn style (call once at the top of a notebook)."""
    sns.set_theme(context="notebook", style="whitegrid", palette="deep", font_scale=0.95)
    plt.rcParams.update({
        "figure.dpi": 110,
        "savefig.dpi": 110,
        "figure.figsize": (6.4, 3.8),
        "axes.titlesize": "medium",
        "axes.spines.top": False,
        "axes.spines.right": False,
    })


def sample_grid(dataset: ImageDataset, per_class: int = 1, max_classes: int = 24,
                ncols: int = 8, caption_width: int = 22, seed: int = 0) -> plt.Figure:
    """A grid of images with their captions (one random sample per class, seeded)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(dataset.labels)[:max_classes]
    picks = [int(rng.choice(np.flatnonzero(dataset.labels == c)))
             for c in classes for _ in range(per_class)]
    nrows = int(np.ceil(len(picks) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.45 * ncols, 1.75 * nrows))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, i in zip(np.atleast_1d(axes).ravel(), picks):
        ax.imshow(dataset.image(i), interpolation="nearest")
        text = dataset.captions[i] if dataset.captions else dataset.class_names[dataset.labels[i]]
        ax.set_title(_wrap(text, caption_width), fontsize=6.5)
    fig.tight_layout()
    return fig


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width and line:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    lines.append(line)
    return "\n".join(lines)


def training_curves(log: pd.DataFrame, smooth: int = 5) -> plt.Figure:
    """Loss and temperature against step from a training log (columns step, loss, temperature)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.5, 3.0))
    a.plot(log["step"], log["loss"], alpha=0.35, color="C0")
    a.plot(log["step"], log["loss"].rolling(smooth, min_periods=1).mean(), color="C0")
    a.set(xlabel="step", ylabel="CLIP loss", title="training loss")
    b.plot(log["step"], log["temperature"], color="C1")
    b.set(xlabel="step", ylabel="τ", title="temperature", yscale="log")
    fig.tight_layout()
    return fig


def bar_compare(df: pd.DataFrame, x: str, y: str, hue: str,
                order: Sequence[str] | None = None, ax: plt.Axes | None = None) -> plt.Axes:
    """Grouped bars with the book's method colours where the hue is a method name."""
    ax = ax or plt.gca()
    palette = {h: METHOD_COLOURS.get(h) for h in df[hue].unique()}
    if any(v is None for v in palette.values()):
        palette = None
    sns.barplot(df, x=x, y=y, hue=hue, order=order, palette=palette, ax=ax)
    return ax
