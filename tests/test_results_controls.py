"""Result files (isoclip.studies.results) and the random-init control (isoclip.studies.controls)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from isoclip.models.loading import load_model
from isoclip.studies.controls import (
    RANDOM_INIT,
    control_comparison,
    random_init_bundle,
    weights_label,
    with_random_init_control,
)
from isoclip.studies.reference import load_paper_numbers
from isoclip.studies.results import (
    RESULT_SCHEMA,
    backbone_label,
    dataset_table,
    load_results,
    paper_averages,
    results_root,
    write_result,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def rows() -> list[dict]:
    out = []
    for ds, clip, oti, iso in (("cub2011", 20.0, 22.0, 26.0), ("oxford_pets", 40.0, 41.0, 45.0)):
        for m, v in (("CLIP", clip), ("OTI", oti), ("IsoCLIP", iso)):
            out.append({"dataset": ds, "task": "image-image", "method": m, "metric": "mAP",
                        "value": v, "queries": 100})
    for variant, v in (("E", 60.0), ("M", 40.0), ("H", 10.0)):
        for m, off in (("CLIP", 0.0), ("IsoCLIP", 3.0)):
            out.append({"dataset": "roxford5k", "task": "image-image", "method": m,
                        "metric": "mAP", "value": v + off, "variant": variant,
                        "in_average": variant == "M"})
    out.append({"dataset": "flickr30k_text", "task": "text-text", "method": "CLIP",
                "metric": "mAP", "value": 30.0})
    return out


# ---------------------------------------------------------------------------------------------
# result files

def test_write_and_load_round_trip(tmp_path) -> None:
    path = write_result("07_intra_modal_retrieval", rows(), model="ViT-B-32",
                        pretrained="openai", params="vit-b-32-openai",
                        bands={"image": (150, 50), "text": (20, 100)},
                        wall_seconds={"features": 12.5}, settings={"inversion_queries": 100},
                        root=tmp_path)
    assert path == tmp_path / "vit-b-32-openai" / "07_intra_modal_retrieval.json"
    body = json.loads(path.read_text())
    assert body["schema"] == RESULT_SCHEMA and body["bands"]["image"] == [150, 50]
    env = body["environment"]
    assert env["torch"] == torch.__version__ and env["open_clip"] and env["device"]
    (res,) = load_results(tmp_path)
    assert res.meta["model"] == "ViT-B-32" and res.label == "vit-b-32-openai / 07_intra_modal_retrieval"
    assert len(res.rows) == len(rows()) and set(res.rows["variant"]) == {"", "E", "M", "H"}
    assert load_results(tmp_path / "nothing-here") == []


def test_dataset_table_layout_average_and_delta(tmp_path) -> None:
    write_result("07", rows(), model="ViT-B-32", pretrained="openai", params="p", root=tmp_path)
    (res,) = load_results(tmp_path)
    t = dataset_table(res, "image-image")
    assert list(t.columns) == ["CLIP", "OTI", "IsoCLIP", "Δ IsoCLIP−CLIP"]
    assert list(t.index) == ["cub2011", "oxford_pets", "roxford5k (E)", "roxford5k (M)",
                             "roxford5k (H)", "average (3 datasets)"]
    avg = t.loc["average (3 datasets)"]
    assert avg["CLIP"] == pytest.approx((20 + 40 + 40) / 3)  # roxford5k enters with M only
    assert avg["IsoCLIP"] == pytest.approx((26 + 45 + 43) / 3)
    assert avg["OTI"] == pytest.approx((22 + 41) / 2)  # over the datasets that have OTI
    assert t.loc["cub2011", "Δ IsoCLIP−CLIP"] == pytest.approx(6.0)
    assert dataset_table(res, "classification").empty


def test_results_root_and_params_from_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ISOCLIP_RESULTS", str(tmp_path / "r"))
    monkeypatch.setenv("ISOCLIP_PARAMS", "fake-vit-b-32")
    assert results_root() == tmp_path / "r"
    path = write_result("03_intra", rows()[:1], model="ViT-B-32", pretrained=None)
    assert path == tmp_path / "r" / "fake-vit-b-32" / "03_intra.json"
    assert json.loads(path.read_text())["pretrained"] is None


@pytest.mark.parametrize("bad, match", [
    ([], "at least one row"),
    ([{"dataset": "x", "task": "t", "method": "m", "metric": "mAP"}], "missing"),
    ([{"dataset": "x", "task": "t", "method": "m", "metric": "mAP", "value": "n/a"}], "finite"),
    ([{"dataset": "x", "task": "t", "method": "m", "metric": "mAP", "value": 1, "oops": 2}],
     "unknown fields"),
])
def test_bad_rows_are_named(tmp_path, bad, match) -> None:
    with pytest.raises(ValueError, match=match):
        write_result("07", bad, model="m", pretrained=None, params="p", root=tmp_path)


def test_bad_names_and_files(tmp_path) -> None:
    with pytest.raises(ValueError, match="params"):
        write_result("07", rows(), model="m", pretrained=None, params="../up", root=tmp_path)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "07.json").write_text('{"schema": 99}')
    with pytest.raises(ValueError, match="schema"):
        load_results(tmp_path)


def test_paper_averages_for_known_and_unknown_backbones() -> None:
    ref = load_paper_numbers()
    iso = paper_averages(ref, "ViT-B-32", "openai", "image-image")
    mine = iso[iso["paper"] == "IsoCLIP"].set_index("method")["value"]
    assert set(mine.index) == {"CLIP", "OTI", "IsoCLIP"} and mine["IsoCLIP"] > mine["CLIP"]
    assert backbone_label("ViT-B-16", "datacomp_xl_s13b_b90k") in set(ref["backbone"])
    assert paper_averages(ref, "ViT-B-32", None, "image-image").empty


# ---------------------------------------------------------------------------------------------
# random-init control

def test_random_init_control_of_vit_b_32() -> None:
    texts = ["a photo of a dog", "a photo of a cat"]
    seen = []

    def evaluate(bundle):
        seen.append(bundle)
        with torch.no_grad():
            return bundle.model.encode_text(bundle.tokenizer(texts))

    model = load_model("ViT-B-32", seed=1)  # stands in for a pretrained model here
    out = with_random_init_control(model, evaluate, seed=0)
    assert list(out) == [f"{RANDOM_INIT} (as given)", RANDOM_INIT]
    control = seen[1]
    assert control.name == "ViT-B-32" and control.pretrained is None
    assert control.fingerprint != model.fingerprint  # other weights, same architecture
    assert [p.shape for p in control.model.parameters()] == \
        [p.shape for p in model.model.parameters()]
    assert torch.equal(out[RANDOM_INIT], evaluate(control))  # the same function on it
    assert not torch.allclose(out[RANDOM_INIT], out[f"{RANDOM_INIT} (as given)"])


def test_control_of_a_checkpoint_and_comparison(tiny, tmp_path) -> None:
    ckpt = tmp_path / "trained.pt"
    torch.save({k: v + 0.01 for k, v in tiny.model.state_dict().items()}, ckpt)
    model = load_model("isoclip-tiny-vit", str(ckpt))
    assert weights_label(model) == "checkpoint trained.pt"
    control = random_init_bundle(model)
    assert control.name == model.name and control.fingerprint == tiny.fingerprint

    def evaluate(bundle):
        with torch.no_grad():
            x = bundle.model.encode_text(bundle.tokenizer(["red circle"])).norm().item()
        return pd.DataFrame({"dataset": ["d"], "method": ["CLIP"], "mAP": [x]})

    out = with_random_init_control(model, evaluate)
    table = control_comparison(out, on=["dataset", "method"], value="mAP")
    assert list(table.columns) == ["dataset", "method", "checkpoint trained.pt", RANDOM_INIT,
                                   f"pretrained − {RANDOM_INIT}"]
    row = table.iloc[0]
    assert row[f"pretrained − {RANDOM_INIT}"] == pytest.approx(
        row["checkpoint trained.pt"] - row[RANDOM_INIT])
    with pytest.raises(ValueError, match="expected one model"):
        control_comparison({RANDOM_INIT: out[RANDOM_INIT]}, on=["dataset"], value="mAP")
    with pytest.raises(TypeError, match="model"):
        random_init_bundle(3)  # type: ignore[arg-type]
