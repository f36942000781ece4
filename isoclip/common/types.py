"""The modality of a feature, a projector or a retrieval task, and its one argument check.

CLIP has two towers; everything that picks one of them (``W_i`` or ``W_t``, the left or the
right singular vectors of Psi, image or caption datasets) takes a :data:`Modality` and checks
it with :func:`check_modality`, so every bad value gets the same message naming the argument.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["MODALITIES", "Modality", "check_modality"]

#: ``"image"`` (the image tower: W_i, U, image datasets) or ``"text"`` (W_t, V, captions).
Modality = Literal["image", "text"]

#: The values of :data:`Modality`, in the order the book lists them.
MODALITIES: tuple[Modality, ...] = ("image", "text")


def check_modality(name: str, value: object) -> Modality:
    """``value`` if it is ``"image"`` or ``"text"``, else a ValueError naming ``name``.

    Args:
        name: the argument's name, for the message (e.g. ``"modality"``, ``"side"``).
        value: what the caller passed.

    Returns:
        ``value``, typed as :data:`Modality`.
    """
    if not isinstance(value, str) or value not in MODALITIES:
        raise ValueError(f"{name}: expected 'image' or 'text', got {value!r}")
    return value
