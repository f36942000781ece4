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
import pickle
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import open_clip
import torch
from PIL import Image

from isoclip.common.cache import file_sha256, stable_hash

CONFIG_DIR = Path(__file__).parent / "configs"
_REGISTERED = False


@contextlib.contextmanager
def expected_random_init() -> Iterator[None]:
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


#: What ``open_clip.create_model`` returns (every one a ``torch.nn.Module``). open_clip ships no
#: type information, so a type checker sees their attributes as untyped.
OpenClipModel: TypeAlias = open_clip.CLIP | open_clip.CustomTextCLIP | open_clip.CoCa


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

    model: OpenClipModel
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


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value (``1``, ``true``, ``yes``, ``on``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


@contextlib.contextmanager
def _honour_hub_offline() -> Iterator[None]:
    """Apply ``HF_HUB_OFFLINE`` as it is *now*: huggingface_hub reads it once, at import, so a
    value set later (e.g. in a notebook) would otherwise be ignored and the hub retried."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - open_clip then cannot use the hub at all
        yield
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = before or hub_offline()
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def weights_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> str:
    """Where open_clip looks for (and, online, downloads) hub weights: ``cache_dir`` if given,
    else ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    if cache_dir is not None:
        return str(cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return "~/.cache/huggingface/hub"


def _weights_hint(name: str, tag: str, cache_dir: str | os.PathLike[str] | None = None) -> str:
    cfg = open_clip.get_pretrained_cfg(name, tag) or {}
    src = cfg.get("hf_hub") or cfg.get("url") or "(unknown source)"
    cache = weights_cache_dir(cache_dir)
    repo = cfg.get("hf_hub", "").strip("/").split("/")
    folder = f"models--{repo[0]}--{repo[1]}" if len(repo) >= 2 else "(the model folder)"
    offline = ("HF_HUB_OFFLINE is set: the hub was not contacted."
               if hub_offline() else "Set HF_HUB_OFFLINE=1 to fail fast instead of retrying "
               "the network.")
    return (
        f"Weights for model={name!r} pretrained={tag!r} are not available offline.\n"
        f"  Source: {src}\n"
        f"  Looked in: {cache} (cache_dir, else HF_HUB_CACHE, else HF_HOME/hub)\n"
        "  Fix, on a machine with internet access: run\n"
        f"    python -c \"import open_clip; "
        f"open_clip.create_model('{name}', pretrained='{tag}')\"\n"
        f"  and copy its Hugging Face cache folder {folder} into {cache} on this machine,\n"
        "  or download the checkpoint file and pass its path as `pretrained=`.\n"
        f"  {offline}"
    )


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used: empty, truncated or corrupt, holding more than plain
    weights (refused, as loading it could run code), or made for another architecture."""


def _weights_id(name: str, pretrained: str | os.PathLike[str], text: str) -> str:
    """``"tag:<tag>"`` or ``"file:<sha256>"`` for a ``pretrained`` argument (see load_model)."""
    tags = open_clip.list_pretrained_tags_by_model(name)
    if not isinstance(pretrained, os.PathLike) and text in tags:
        return f"tag:{text}"
    path = Path(text)
    if path.is_file():
        return "file:" + file_sha256(path)
    known = tags or "none (this architecture has no released weights)"
    if isinstance(pretrained, os.PathLike) or path.suffix or os.sep in text:
        raise FileNotFoundError(
            f"pretrained={text!r}: checkpoint file not found (no such file: {path.absolute()}), "
            f"and not a known tag for model {name!r}. Known tags: {known}. Pass one of them or "
            "the path of an existing checkpoint.")
    raise ValueError(
        f"pretrained={text!r}: not a known tag for model {name!r} and no such file in "
        f"{Path.cwd()}. Known tags: {known}.")


def _checkpoint_problem(name: str, path: str, error: BaseException) -> str:
    """Why open_clip could not load checkpoint ``path`` into ``name``, and what to do."""
    size = os.path.getsize(path)
    first = " ".join(str(error).split())
    first = first if len(first) <= 300 else first[:297] + "..."
    if size == 0:
        return (f"checkpoint {path} is empty (0 bytes): the download or copy did not complete. "
                "Download it again.")
    try:
        if Path(path).suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(path, framework="pt") as f:
                list(f.keys())
        elif Path(path).suffix not in {".npz", ".npy"}:
            torch.load(path, map_location="cpu", weights_only=True,
                       mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            hint = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln), "")
            return (f"checkpoint {path} holds objects other than tensors and plain containers "
                    f"({hint or 'not plain weights'}); it was refused, since loading it could "
                    "run code. Use a checkpoint that holds a state_dict (download it again from "
                    "a trusted source, or save model.state_dict()).")
        return (f"checkpoint {path} ({size} bytes) cannot be read ({type(e).__name__}: {e}): it "
                "is truncated or corrupt. Download it again.")
    except Exception as e:  # noqa: BLE001 - any failure to read means the file is damaged
        return (f"checkpoint {path} ({size} bytes) cannot be read ({type(e).__name__}: "
                f"{(str(e).strip().splitlines() or [''])[0]}): it is truncated or corrupt. "
                "Download it again.")
    return (f"checkpoint {path} does not fit the architecture of model {name!r} "
            f"({type(error).__name__}: {first}). Pass the open_clip model name the checkpoint "
            "was trained with (e.g. its config name), or a checkpoint of this model.")


def load_model(
    name: str,
    pretrained: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device | None = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> ModelBundle:
    """Load an open_clip model (ours or any other) with its preprocess and tokenizer.

    Args:
        name: open_clip model name (``"ViT-B-32"``), an isoclip tiny config
            (``"isoclip-tiny-vit"``), or an ``hf-hub:``/``local-dir:`` identifier.
        pretrained: None (random init, seeded with ``seed``), an open_clip pretrained tag
            (``"openai"``, ``"datacomp_xl_s13b_b90k"``), or a path to a checkpoint file (any
            name, e.g. ``"tiny.ckpt"``; a known tag wins over a file of the same name, write
            ``"./openai"`` for the file). Checkpoints are read with ``weights_only=True``.
        device: ``"cpu"``, ``"cuda"``, ``"auto"``.
        cache_dir: where open_clip looks for/downloads hub weights (Hugging Face cache layout);
            None: ``HF_HUB_CACHE`` / ``HF_HOME`` / ``~/.cache/huggingface``. ``HF_HUB_OFFLINE=1``
            (read at call time) forbids any download.
        seed: seed of the random initialisation when ``pretrained`` is None.

    Raises:
        ValueError: unknown model name or pretrained tag (the message lists what exists).
        FileNotFoundError: ``pretrained`` looks like a path (a suffix or a folder) but no such
            file exists.
        CheckpointError: the checkpoint file is empty, truncated, holds more than weights, or
            belongs to another architecture (the message names the file and what to do).
        MissingWeightsError: a valid tag whose weights cannot be loaded offline.
    """
    register_configs()
    _check_name(name)
    dev = resolve_device(device)
    pretrained_str = None if pretrained is None else str(pretrained)
    weights_id: str
    if pretrained is None:
        weights_id = f"random-init:seed={seed}"
    else:
        weights_id = _weights_id(name, pretrained, str(pretrained))

    torch.manual_seed(seed)
    quiet = expected_random_init() if pretrained_str is None else contextlib.nullcontext()
    try:
        with quiet, _honour_hub_offline():
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained_str, device=dev,
                cache_dir=None if cache_dir is None else str(cache_dir), weights_only=True,
            )
    except Exception as e:
        if pretrained_str is not None and weights_id.startswith("file:"):
            raise CheckpointError(_checkpoint_problem(name, pretrained_str, e)) from e
        if isinstance(e, RuntimeError) and weights_id.startswith("tag:"):
            raise MissingWeightsError(_weights_hint(name, str(pretrained_str), cache_dir)) from e
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


def share_towers(model: torch.nn.Module) -> OpenClipModel:
    """Turn an open_clip ``CLIP`` with equal-width towers into AlignCLIP's SharedCLIP, in place.

    SharedCLIP (AlignCLIP, Eslami & de Melo, ICLR 2025; official ``align_clip/model.py`` l.144-259)
    keeps modality-specific *input* embeddings — the image side's conv patch embedding, class
    token, positional embedding and ``ln_pre``; the text side's token and positional
    embeddings — and shares everything after them: ONE transformer, ONE final LayerNorm and
    ONE projection. Images are pooled at the class token without a mask, texts at the EOT
    token under the causal mask, exactly as open_clip's two towers already do.

    Here the text tower's modules become the image tower's too: ``visual.transformer`` is
    ``model.transformer``, ``visual.ln_post`` is ``model.ln_final`` and ``visual.proj`` is the
    Parameter ``model.text_projection``. The model stays an open_clip ``CLIP``, so
    ``encode_image``/``encode_text``, the projectors (then ``W_i = W_t``), the pre-projection
    features and OTI/OVI run unchanged. ``state_dict`` lists the shared tensors under both
    names (loading writes the same values twice); ``parameters()`` yields them once.

    Raises:
        NotImplementedError: not a ``CLIP`` with a ``VisionTransformer`` and a Parameter text
            projection, or the towers differ in width, depth, heads or MLP width (AlignCLIP
            asserts the same, l.166-181). The message names the mismatch.
    """
    from open_clip.model import CLIP
    from open_clip.transformer import VisionTransformer

    if not isinstance(model, CLIP) or not isinstance(model.visual, VisionTransformer):
        raise NotImplementedError(
            f"share_towers: needs an open_clip CLIP with a VisionTransformer image tower, got "
            f"{type(model).__name__} / {type(getattr(model, 'visual', None)).__name__}")
    if not isinstance(model.text_projection, torch.nn.Parameter) or model.visual.proj is None:
        raise NotImplementedError("share_towers: both towers need a Parameter projection")
    vt, tt = model.visual.transformer, model.transformer
    v_blk, t_blk = vt.resblocks[0], tt.resblocks[0]
    checks = {
        "width": (vt.width, tt.width),
        "layers": (vt.layers, tt.layers),
        "heads": (v_blk.attn.num_heads, t_blk.attn.num_heads),
        "mlp width": (v_blk.mlp.c_fc.out_features, t_blk.mlp.c_fc.out_features),
        "projection shape": (tuple(model.visual.proj.shape), tuple(model.text_projection.shape)),
    }
    bad = {k: v for k, v in checks.items() if v[0] != v[1]}
    if bad:
        raise NotImplementedError(
            "share_towers: the image and text towers must have the same shape to share one "
            "transformer; (image, text) differ in " + ", ".join(f"{k} {v}" for k, v in bad.items())
            + " (use an equal-width config such as 'isoclip-tiny-vit-w96')")
    model.visual.transformer = model.transformer
    model.visual.ln_post = model.ln_final
    model.visual.proj = model.text_projection
    return model


def towers_shared(model: torch.nn.Module) -> bool:
    """True when ``model`` is a SharedCLIP made by :func:`share_towers`."""
    visual = getattr(model, "visual", None)
    return (visual is not None and getattr(visual, "transformer", None) is not None
            and visual.transformer is getattr(model, "transformer", None)
            and getattr(visual, "proj", None) is getattr(model, "text_projection", None))
