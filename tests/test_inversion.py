"""OTI / OVI (isoclip.baselines.inversion) on random-init tiny and ViT-B-32 architectures.

The plumbing checks are exact (``torch.equal``): the forward passes with injected embeddings
run the same float32 operations as ``encode_text`` / ``encode_image`` when the injected
embeddings are the real ones. Runs single-threaded (the machine is shared). Sockets are
blocked by ``conftest.py``.
"""

from __future__ import annotations

import pytest
import torch

from isoclip.baselines.inversion import (
    InversionResult,
    encode_image_with_pseudo_patches,
    encode_text_with_pseudo_tokens,
    expand_pseudo_patches,
    oti,
    ovi,
    placeholder_positions,
)
from isoclip.models.loading import ModelBundle, load_model

TEMPLATES = ["a photo of {}", "{} in the wild.", "a {}, a kind of shape."]
WORDS = ["cat", "dog", "red"]  # single BPE tokens of open_clip's SimpleTokenizer


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def vitb32() -> ModelBundle:
    return load_model("ViT-B-32", seed=0)


@pytest.fixture(params=["tiny", "vitb32"])
def bundle(request: pytest.FixtureRequest) -> ModelBundle:
    return request.getfixturevalue(request.param)


def image_batch(bundle: ModelBundle, n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, bundle.image_size, bundle.image_size, generator=gen)


def image_targets(bundle: ModelBundle, n: int) -> torch.Tensor:
    with torch.no_grad():
        return bundle.model.encode_image(image_batch(bundle, n))


def text_targets(bundle: ModelBundle, captions: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return bundle.model.encode_text(bundle.tokenizer(captions))


# ---------------------------------------------------------------------------------------------
# placeholder and plumbing

@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("num_tokens", [1, 2, 3])
def test_placeholder_positions_any_template(tiny: ModelBundle, template: str,
                                            num_tokens: int) -> None:
    tokens, positions = placeholder_positions(tiny.tokenizer, template, num_tokens)
    real = tiny.tokenizer([template.replace("{}", " ".join(WORDS[:num_tokens]))])
    assert tokens.shape == real.shape == (1, tiny.context_length)
    assert positions.shape == (num_tokens,)
    # same sequence as the real text except at exactly the placeholder positions
    differs = (tokens[0] != real[0]).nonzero().flatten()
    assert torch.equal(differs, positions)
    ph = tiny.tokenizer(["£"])[0, 1]  # the official get_special_token_idx
    assert (tokens[0, positions] == ph).all()


@pytest.mark.parametrize("template", TEMPLATES)
def test_text_plumbing_reproduces_encode_text(bundle: ModelBundle, template: str) -> None:
    """Injecting the real word embeddings at the placeholders gives encode_text exactly,
    including the EOT pooling position (which moves with the template)."""
    model, num_tokens = bundle.model, 2
    tokens, positions = placeholder_positions(bundle.tokenizer, template, num_tokens)
    real = bundle.tokenizer([template.replace("{}", " ".join(WORDS[:num_tokens])),
                             template.replace("{}", " ".join(WORDS[-num_tokens:]))])
    with torch.no_grad():
        injected = model.token_embedding(real[:, positions])  # [2, R, e]
        preproj, projected = encode_text_with_pseudo_tokens(model, tokens, positions, injected)
        expected = model.encode_text(real)
    assert preproj.shape == (2, model.transformer.width)
    assert torch.equal(projected, expected)


def test_image_plumbing_reproduces_encode_image(bundle: ModelBundle) -> None:
    """With P = number of patches, the pseudo-patch expansion is the identity, and feeding
    the real patch embeddings conv1(x) gives encode_image exactly."""
    visual = bundle.model.visual
    images = image_batch(bundle, 2)
    with torch.no_grad():
        patches = visual.conv1(images).flatten(2).transpose(1, 2)  # [B, N, c]
        preproj, projected = encode_image_with_pseudo_patches(bundle.model, patches)
        expected = bundle.model.encode_image(images)
    assert preproj.shape == (2, visual.class_embedding.shape[0])
    assert torch.equal(projected, expected)


def test_expand_pseudo_patches_nearest() -> None:
    pseudo = torch.randn(2, 3, 5)
    one = expand_pseudo_patches(pseudo[:, :1], 16)
    assert one.shape == (2, 16, 5) and torch.equal(one, pseudo[:, :1].expand(-1, 16, -1))
    assert torch.equal(expand_pseudo_patches(pseudo, 3), pseudo)
    three = expand_pseudo_patches(pseudo, 16)
    idx = torch.arange(16) * 3 // 16  # floor(n P / N): contiguous runs
    assert torch.equal(three, pseudo[:, idx])


# ---------------------------------------------------------------------------------------------
# OTI / OVI

def test_oti_shapes_loss_decreases_snapshots(tiny: ModelBundle) -> None:
    targets = image_targets(tiny, 3)
    res = oti(tiny.model, tiny.tokenizer, targets, num_pseudo_tokens=2, steps=20,
              snapshot_steps=(0, 5, 20), progress=False)
    assert isinstance(res, InversionResult)
    e = tiny.model.token_embedding.embedding_dim
    assert res.pseudo.shape == (3, 2, e)
    assert res.features.shape == targets.shape
    assert res.preproj.shape == (3, tiny.model.transformer.width)
    assert res.losses.shape == (20,) and res.final_loss.shape == (3,)
    assert res.losses[-1] < res.losses[0] and res.final_loss.mean() < res.losses[0]
    assert sorted(res.snapshots) == [0, 5, 20]
    assert torch.equal(res.snapshots[20], res.features)
    # features are the text encoder's output for the learned tokens, projected, unnormalised
    tokens, positions = placeholder_positions(tiny.tokenizer, "a photo of {}", 2)
    with torch.no_grad():
        _, again = encode_text_with_pseudo_tokens(tiny.model, tokens, positions, res.pseudo)
    assert torch.equal(again, res.features)
    # losses[k] is the batch-mean 1 - cos of the features after k updates
    for k in (0, 5):
        cos = torch.nn.functional.cosine_similarity(res.snapshots[k], targets)
        assert torch.allclose((1 - cos).mean(), res.losses[k], atol=1e-6)


def test_ovi_shapes_loss_decreases(tiny: ModelBundle) -> None:
    targets = text_targets(tiny, ["a red circle", "a blue square"])
    res = ovi(tiny.model, targets, num_pseudo_patches=2, steps=20, progress=False)
    c = tiny.model.visual.class_embedding.shape[0]
    assert res.pseudo.shape == (2, 2, c)
    assert res.features.shape == targets.shape
    assert res.preproj.shape == (2, c)
    assert res.losses.shape == (20,)
    assert res.losses[-1] < res.losses[0] and res.final_loss.mean() < res.losses[0]


def test_same_seed_same_result_and_model_untouched(tiny: ModelBundle) -> None:
    model = tiny.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    targets = image_targets(tiny, 2)
    a = oti(model, tiny.tokenizer, targets, steps=5, seed=7, progress=False)
    with torch.no_grad():  # works inside a caller's no_grad block
        b = oti(model, tiny.tokenizer, targets, steps=5, seed=7, progress=False)
    c = oti(model, tiny.tokenizer, targets, steps=5, seed=8, progress=False)
    assert torch.equal(a.pseudo, b.pseudo) and torch.equal(a.features, b.features)
    assert torch.equal(a.losses, b.losses)
    assert not torch.equal(a.pseudo, c.pseudo)
    texts = text_targets(tiny, ["a green star"])
    d, e = (ovi(model, texts, steps=3, seed=1, progress=False) for _ in range(2))
    assert torch.equal(d.features, e.features)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_vitb32_oti_ovi_few_steps(vitb32: ModelBundle) -> None:
    model = vitb32.model
    res = oti(model, vitb32.tokenizer, image_targets(vitb32, 1), steps=3, progress=False)
    assert res.pseudo.shape == (1, 1, 512) and res.features.shape == (1, 512)
    assert res.final_loss.mean() < res.losses[0]
    res = ovi(model, text_targets(vitb32, ["a photo of a cat"]), steps=2, progress=False)
    assert res.pseudo.shape == (1, 1, 768) and res.features.shape == (1, 512)
    assert res.final_loss.mean() < res.losses[0]


# ---------------------------------------------------------------------------------------------
# errors

@pytest.mark.parametrize("kwargs, argument", [
    ({"template": "a photo of"}, "template"),
    ({"template": "{} and {}"}, "template"),
    ({"template": "a £ photo of {}"}, "template"),
    ({"template": "a photo of a " + "very " * 25 + "long {}"}, "template"),
    ({"placeholder": "two words"}, "placeholder"),
    ({"num_pseudo_tokens": 0}, "num_pseudo_tokens"),
    ({"steps": -1}, "steps"),
    ({"lr": 0.0}, "lr"),
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"init_std": 0.0}, "init_std"),
    ({"snapshot_steps": (3,)}, "snapshot_steps"),
])
def test_oti_bad_arguments(tiny: ModelBundle, kwargs: dict, argument: str) -> None:
    targets = image_targets(tiny, 1)
    kwargs = {"steps": 2, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=argument):
        oti(tiny.model, tiny.tokenizer, targets, **kwargs)


def test_bad_targets_and_modes(tiny: ModelBundle) -> None:
    model = tiny.model
    with pytest.raises(ValueError, match="image_features"):
        oti(model, tiny.tokenizer, torch.zeros(2, 7), steps=1, progress=False)
    with pytest.raises(ValueError, match="text_features"):
        ovi(model, torch.zeros(3), steps=1, progress=False)
    with pytest.raises(ValueError, match="num_pseudo_patches"):
        ovi(model, text_targets(tiny, ["a cat"]), num_pseudo_patches=10_000, steps=1,
            progress=False)
    model.train()
    try:
        with pytest.raises(ValueError, match="model"):
            ovi(model, text_targets(tiny, ["a cat"]), steps=1, progress=False)
    finally:
        model.eval()
    with pytest.raises(NotImplementedError, match="CLIP"):
        oti(torch.nn.Linear(2, 2), tiny.tokenizer, torch.zeros(1, 2), steps=1, progress=False)
