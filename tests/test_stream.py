"""The streaming training split (fresh pairs every batch) and TrainConfig(data=...)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from isoclip.data.world.config import WorldConfig
from isoclip.data.world.stream import TrainStream, train_stream
from isoclip.data.world.synthetic import make_world
from isoclip.studies.data_scale import distinct_pairs, scale_train_config
from isoclip.training.embedded import DEFAULT_TRAIN
from isoclip.training.trainer import TrainConfig, load_or_train, train_key_material

SMALL = WorldConfig(n_train_per_class=2, n_query_per_class=1, n_gallery_per_class=1,
                    n_text_query_per_class=1, n_text_gallery_per_class=1)
RICH = replace(SMALL, scene="compositional", max_objects=3, mention_prob=0.5)


def test_default_train_key_is_the_one_before_the_data_switch() -> None:
    # the 14 fields that made the key before TrainConfig.data existed, with their values
    assert DEFAULT_TRAIN.key_dict() == {
        "model": "isoclip-tiny-vit", "steps": 800, "batch_size": 256, "lr": 1e-3,
        "weight_decay": 0.1, "warmup_frac": 0.1, "temperature": None, "init_temperature": 0.07,
        "seed": 0, "log_every": 10, "checkpoint_fracs": (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)}
    assert replace(DEFAULT_TRAIN, data="fixed").key_dict() == DEFAULT_TRAIN.key_dict()
    assert replace(DEFAULT_TRAIN, data="stream").key_dict()["data"] == "stream"


@pytest.mark.parametrize("cfg", [SMALL, RICH], ids=["single", "compositional"])
def test_stream_is_deterministic_and_fresh(cfg: WorldConfig) -> None:
    a, b = TrainStream(cfg), TrainStream(cfg)
    first, again, second = a.batch(0, 24), b.batch(0, 24), a.batch(1, 24)
    assert np.array_equal(first.images, again.images)
    assert list(first.captions) == list(again.captions)
    assert np.array_equal(first.labels, again.labels)
    assert first.images.shape == (24, cfg.image_size, cfg.image_size, 3)
    assert first.images.dtype == np.uint8 and len(first.captions) == 24
    assert ((first.labels >= 0) & (first.labels < len(cfg.classes))).all()
    assert not np.array_equal(first.images, second.images)
    fixed = make_world(cfg).train
    # no streamed image equals any image of the fixed split (they are other scenes)
    flat_fixed = {im.tobytes() for im in fixed.images}
    assert not any(im.tobytes() in flat_fixed for im in first.images)
    # a batch's prefix does not depend on the batch size for its labels' stream
    assert np.array_equal(a.labels(3, 10), a.labels(3, 40)[:10])


def test_stream_name_ignores_the_fixed_size_and_follows_the_generator_fields() -> None:
    s = TrainStream(SMALL)
    assert s.name.endswith("/train-stream")
    assert s.name == TrainStream(replace(SMALL, n_train_per_class=9)).name
    assert s.name != TrainStream(replace(SMALL, seed=1)).name
    assert s.name != TrainStream(RICH).name
    assert s.fingerprint() != TrainStream(replace(SMALL, seed=1)).fingerprint()
    assert train_stream(SMALL) is train_stream(SMALL)
    assert s.name != make_world(SMALL).train.name


def test_stream_rejects_bad_arguments() -> None:
    s = TrainStream(SMALL)
    with pytest.raises(ValueError, match="b: expected a batch index >= 0"):
        s.batch(-1, 4)
    with pytest.raises(ValueError, match="n: expected a batch size >= 1"):
        s.batch(0, 0)
    with pytest.raises(TypeError, match="b: expected an int"):
        s.batch(1.5, 4)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config: expected a WorldConfig"):
        TrainStream("default")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data: expected one of"):
        TrainConfig(data="online")
    fixed_cfg, stream_cfg = TrainConfig(steps=2), TrainConfig(steps=2, data="stream")
    with pytest.raises(TypeError, match="TrainStream"):
        train_key_material(make_world(SMALL).train, stream_cfg)
    with pytest.raises(TypeError, match="ImageDataset"):
        train_key_material(s, fixed_cfg)


def test_streaming_training_is_reproducible(isolated_cache) -> None:
    torch.set_num_threads(1)
    cfg = TrainConfig(steps=3, batch_size=8, log_every=1, checkpoint_fracs=(0.0, 1.0),
                      data="stream")
    stream = TrainStream(SMALL)
    a = load_or_train(stream, cfg, progress=False)
    b = load_or_train(stream, cfg, progress=False, cache=False)  # retrained
    for k, v in a.bundle.model.state_dict().items():
        assert torch.equal(v, b.bundle.model.state_dict()[k]), k
    assert np.isfinite(a.log["loss"]).all()
    # the same recipe on the fixed split is another model with another key
    fixed = load_or_train(make_world(SMALL).train, replace(cfg, data="fixed"), progress=False)
    assert fixed.key != a.key
    assert any(not torch.equal(v, fixed.bundle.model.state_dict()[k])
               for k, v in a.bundle.model.state_dict().items())


def test_distinct_pairs_and_schedule() -> None:
    cfg = scale_train_config("stream", None, 100, (20, 50))
    assert cfg.checkpoint_steps() == [20, 50, 100]
    assert distinct_pairs(cfg, SMALL, 50) == 50 * 256
    fixed = replace(cfg, data="fixed")
    assert distinct_pairs(fixed, SMALL, 50) == len(SMALL.classes) * SMALL.n_train_per_class
    with pytest.raises(ValueError, match="at: expected steps"):
        scale_train_config("fixed", None, 100, (0, 50))
