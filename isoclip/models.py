"""Loading CLIP-like models: our tiny configs and any open_clip name + pretrained tag.

One function, :func:`load_model`, serves the embedded default (tiny configs shipped in
``isoclip/configs/*.json``, registered with ``open_clip.add_model_config``) and the real path
(``"ViT-B-32", pretrained="openai"`` or a local checkpoint). Nothing is downloaded silently
when it cannot be: missing weights raise :class:`MissingWeightsError` saying what to fetch and
where to put it.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import open_clip
import torch
from PIL import Image

from .cache import file_sha256, stable_hash

CONFIG_DIR = Path(__file__).parent / "configs"
_REGISTERED = False


@contextlib.contextmanager
def expected_random_init() -> "contextlib.AbstractContextManager[None]":
    """Silence open_clip's "No pretrained weights loaded" warning where random init is intended
    (our tiny models before training, ``pretrained=None`` tests); other warnings pass."""

    class _Filter(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "No pretrained weights loaded" not in record.getMessage()

    flt = _Filter()
    root = logging.getLogger()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


class MissingWeightsError(RuntimeError):
    """Pretrained weights were asked for but are neither cached locally nor downloadable."""


def register_configs() -> list[str]:
    """Register ``isoclip/configs/*.json`` with open_clip (idempotent); return their names."""
    global _REGISTERED
    if not _REGISTERED:
        open_clip.add_model_config(CONFIG_DIR)
        _REGISTERED = True
    return tiny_model_names()


def tiny_model_names() -> list[str]:
    """Names of the tiny configs shipped with isoclip (e.g. ``"isoclip-tiny-vit"``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


@dataclass
class ModelBundle:
    """A model with what is needed to feed it.

    Attributes:
        model: open_clip ``CLIP`` / ``CustomTextCLIP`` in eval mode, float32.
        preprocess: PIL image -> float tensor [3, H, W] (the model's own validation transform).
        tokenizer: list of N strings -> LongTensor [N, context_length].
        name: open_clip model name.
        pretrained: pretrained tag, checkpoint path, or None (random init / our training).
        fingerprint: sha256 identifying weights + config + preprocessing; part of every
            feature-cache key.
        device: where the model lives.
    """

    model: torch.nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    name: str
    pretrained: str | None
    fingerprint: str
    device: torch.device

    @property
    def context_length(self) -> int:
        return int(self.model.context_length)

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; anything else as given."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _check_name(name: str) -> None:
    if name.startswith(("hf-hub:", "local-dir:")):
        return
    known = open_clip.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        raise ValueError(
            f"model name {name!r}: not an open_clip or isoclip config. "
            f"Close matches: {close or 'none'}. isoclip tiny configs: {tiny_model_names()}. "
            "Full list: open_clip.list_models()."
        )


def _weights_hint(name: str, tag: str) -> str:
    cfg = open_clip.get_pretrained_cfg(name, tag) or {}
    src = cfg.get("hf_hub") or cfg.get("url") or "(unknown source)"
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
    return (
        f"Weights for model={name!r} pretrained={tag!r} are not available offline.\n"
        f"  Source: {src}\n"
        "  Fix, on a machine with internet access: run\n"
        f"    python -c \"import open_clip; "
        f"open_clip.create_model('{name}', pretrained='{tag}')\"\n"
        f"  and copy the Hugging Face cache ({cache}) to this machine, or download the\n"
        "  checkpoint file and pass its path as `pretrained=`. Set HF_HUB_OFFLINE=1 to fail\n"
        "  fast instead of retrying the network."
    )


def load_model(
    name: str,
    pretrained: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = "cpu",
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> ModelBundle:
    """Load an open_clip model (ours or any other) with its preprocess and tokenizer.

    Args:
        name: open_clip model name (``"ViT-B-32"``), an isoclip tiny config
            (``"isoclip-tiny-vit"``), or an ``hf-hub:``/``local-dir:`` identifier.
        pretrained: None (random init, seeded with ``seed``), an open_clip pretrained tag
            (``"openai"``, ``"datacomp_xl_s13b_b90k"``), or a path to a checkpoint file.
        device: ``"cpu"``, ``"cuda"``, ``"auto"``.
        cache_dir: where open_clip looks for/downloads weights.
        seed: seed of the random initialisation when ``pretrained`` is None.

    Raises:
        ValueError: unknown model name or pretrained tag (the message lists what exists).
        FileNotFoundError: ``pretrained`` looks like a path that does not exist.
        MissingWeightsError: a valid tag whose weights cannot be loaded offline.
    """
    register_configs()
    _check_name(name)
    dev = resolve_device(device)
    pretrained_str = None if pretrained is None else str(pretrained)
    weights_id: str
    if pretrained_str is None:
        weights_id = f"random-init:seed={seed}"
    elif (Path(pretrained_str).suffix in {".pt", ".pth", ".bin", ".safetensors"}
          or os.sep in pretrained_str):
        if not Path(pretrained_str).is_file():
            raise FileNotFoundError(
                f"pretrained={pretrained_str!r}: checkpoint file not found. Pass an open_clip "
                f"tag (known for {name!r}: {open_clip.list_pretrained_tags_by_model(name)}) "
                "or the path of an existing checkpoint."
            )
        weights_id = "file:" + file_sha256(pretrained_str)
    else:
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained_str not in tags:
            raise ValueError(
                f"pretrained={pretrained_str!r}: not a known tag for model {name!r}. "
                f"Known tags: {tags or 'none (this architecture has no released weights)'}."
            )
        weights_id = f"tag:{pretrained_str}"

    torch.manual_seed(seed)
    quiet = expected_random_init() if pretrained_str is None else contextlib.nullcontext()
    try:
        with quiet:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained_str, device=dev,
                cache_dir=None if cache_dir is None else str(cache_dir),
            )
    except RuntimeError as e:
        if pretrained_str is not None and weights_id.startswith("tag:"):
            raise MissingWeightsError(_weights_hint(name, pretrained_str)) from e
        raise
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    fingerprint = stable_hash({
        "name": name,
        "weights": weights_id,
        "config": open_clip.get_model_config(name),
        "preprocess": repr(preprocess),
        "open_clip": open_clip.__version__,
    })
    return ModelBundle(model=model, preprocess=preprocess, tokenizer=tokenizer, name=name,
                       pretrained=pretrained_str, fingerprint=fingerprint, device=dev)
