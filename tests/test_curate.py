"""Pseudo-label curation: rules, training layout, restart, bad input, Ray = local, and the typer command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

import hpsedge.curate.core as core
import hpsedge.curate.shards as shards
from hpsedge.cli.curate import curate_cmd
from hpsedge.curate import OUTPUT_NAME, curate, parse_rule, plan_items
from hpsedge.curate.rules import metric_values
from hpsedge.errors import HpsedgeError, InputError
from hpsedge.export.onnx import export_onnx
from hpsedge.runtime.confidence import accumulate_sigma
from hpsedge.runtime.predictor import Predictor

TWO = [[4, 4, 60, 90], [50, 10, 120, 92]]
LOAD = {"backend": "ort", "device": "cpu"}
CUR = {**LOAD, "part": False}  # curation without the SMPL files (zero keypoints)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx("poco-cliff", tmp_path_factory.mktemp("cur") / "poco-cliff", tiny=True).out_dir


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """9 images (3 in a subfolder) with 0, 1 or 2 boxes each, and their boxes file."""
    root = tmp_path_factory.mktemp("data")
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    boxes: dict[str, Any] = {}
    for i in range(9):
        rel = f"sub/img{i}.jpg" if i % 3 == 0 else f"img{i}.jpg"
        Image.fromarray((rng.random((96, 128, 3)) * 255).astype(np.uint8)).save(images / rel)
        boxes[rel if i % 2 else Path(rel).name] = TWO[: i % 3]  # keys: relative paths or bare names
    (root / "boxes.json").write_text(json.dumps(boxes))
    return images, root / "boxes.json"


# =============================================================================================== rules
def test_rule_parsing_and_metrics() -> None:
    r = parse_rule("pelvis_sigma<0.3")
    assert r.clauses == (("pelvis_sigma", "<", 0.3),) and r.text == "pelvis_sigma<0.3" and r.needs_sigma
    assert parse_rule(" mean_sigma <= 0.5 and confidence>0.6 ").text == "mean_sigma<=0.5 and confidence>0.6"
    assert parse_rule("all").clauses == () and parse_rule("max_sigma<1 & score<.5").clauses[1] == ("score", "<", 0.5)
    sigma = np.array([[0.2] * 24, [0.35] + [0.01] * 23])
    np.testing.assert_allclose(metric_values("pelvis_sigma", sigma, None), [0.2, 0.35])
    acc = accumulate_sigma(sigma)
    np.testing.assert_allclose(metric_values("mean_sigma", sigma, None), acc.mean(1))
    np.testing.assert_allclose(metric_values("max_sigma", sigma, None), acc.max(1))
    assert parse_rule("pelvis_sigma<0.3").apply(sigma, None).tolist() == [True, False]  # the official rule
    assert acc[0].max() == pytest.approx(1.8)  # 9 joints on the pelvis → hand chain
    assert parse_rule("pelvis_sigma<=0.35 and max_sigma<1.5").apply(sigma, None).tolist() == [False, True]
    assert parse_rule("score<0.3").apply(None, np.array([0.8, 0.6])).tolist() == [True, False]
    for bad, match in (("pelvis<0.3", "unknown rule metric"), ("pelvis_sigma=0.3", "cannot parse"),
                       ("pelvis_sigma<abc", "cannot parse")):
        with pytest.raises(InputError, match=match):
            parse_rule(bad)
    with pytest.raises(InputError, match="needs POCO's σ"):
        parse_rule("pelvis_sigma<0.3").apply(None, np.zeros(2))


# ============================================================================================= curation
def test_output_layout_matches_the_training_loaders(export: Path, dataset: tuple[Path, Path], tmp_path: Path,
                                                   smpl_npz: Path, j_regressor_extra_path: Path) -> None:
    images, boxes = dataset
    summary = curate(export, images, boxes, tmp_path / "out", rule="all", shard_size=4, smpl=smpl_npz,
                     j_regressor_extra=j_regressor_extra_path, write_var=True, **LOAD)
    z = np.load(tmp_path / "out" / OUTPUT_NAME)
    n = 9  # 3 images × (0 + 1 + 2) boxes
    expected = {"imgname": (n,), "center": (n, 2), "scale": (n,), "pose": (n, 72), "shape": (n, 10), "var": (n, 24),
                "sigma": (n, 24), "has_smpl": (n,), "part": (n, 24, 3), "gender": (n,), "person_id": (n,),
                "bbox": (n, 4), "score": (n,), "confidence": (n,)}
    assert {k: z[k].shape for k in z.files} == expected  # every key has the person axis first
    assert z["imgname"].tolist()[:3] == ["img1.jpg", "img2.jpg", "img2.jpg"] and "sub/img3.jpg" not in z["imgname"]
    assert summary["people"] == summary["kept"] == n and summary["images"] == 9 and summary["shards"] == 3
    assert (z["has_smpl"] == 1).all() and z["gender"].tolist() == ["n"] * n
    assert np.isin(z["part"][..., 2], (0.0, 1.0)).all() and z["part"][..., :2].any()
    np.testing.assert_array_equal(z["var"], z["sigma"])

    # the values are the Predictor's, in the SPIN conventions, predicted on the trainer's integer crop
    pred = Predictor.load(export, smpl=smpl_npz, j_regressor_extra=j_regressor_extra_path, **LOAD)
    rgb = np.asarray(Image.open(images / "img2.jpg").convert("RGB"))
    people = pred.predict(rgb, shards.trainer_boxes(np.array(TWO[:2], float)))
    for pid, p in enumerate(people):
        i = 1 + pid
        np.testing.assert_allclose(z["pose"][i], p.pose_axis_angle.reshape(72), atol=1e-6)
        np.testing.assert_allclose(z["shape"][i], p.betas, atol=1e-6)
        np.testing.assert_allclose(z["sigma"][i], p.sigma, atol=1e-7)  # raw σ (the loader accumulates it)
        np.testing.assert_allclose(z["center"][i], np.rint(p.center))
        side = max(TWO[pid][2] - TWO[pid][0], TWO[pid][3] - TWO[pid][1])
        assert z["scale"][i] == pytest.approx(round(side) / 200.0)
        assert z["person_id"][i] == pid
        np.testing.assert_array_equal(z["bbox"][i], np.array(TWO[pid], np.float32))  # the box as given
        np.testing.assert_allclose(z["part"][i, :, :2], p.joints49_2d[25:], atol=1e-3)

    # what pocolib/dataset/base_dataset.py does with it: get_confident_frames, then index every key
    var = accumulate_sigma(z["var"])
    idx = (var[:, 0] < 0.3).nonzero()[0]
    subset = {k: z[k][idx] for k in z.files}
    assert all(len(v) == len(idx) for v in subset.values())
    assert summary["trainer"] == {"var_written": True, "uncert_threshold": 0.3,
                                  "rows_the_trainer_threshold_would_drop": n - len(idx),
                                  "rows_the_trainer_uses": len(idx)}


def test_rule_threshold_selects_and_is_recorded(export: Path, dataset: tuple[Path, Path], tmp_path: Path) -> None:
    images, boxes = dataset
    everyone = np.load(curate(export, images, boxes, tmp_path / "a", rule="all", **CUR) and tmp_path / "a" / OUTPUT_NAME)
    s0 = np.sort(everyone["sigma"][:, 0])
    thr = float((s0[3] + s0[4]) / 2)  # between the 4th and 5th pelvis σ: exactly 4 kept
    rule = f"pelvis_sigma<{thr!r}"
    summary = curate(export, images, boxes, tmp_path / "b", rule=rule, **CUR)
    z = np.load(tmp_path / "b" / OUTPUT_NAME)
    assert summary["kept"] == len(z["imgname"]) == 4 and summary["people"] == 9
    assert (z["sigma"][:, 0] < thr).all() and "var" not in z.files  # σ under a key the official loader ignores
    recorded = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert recorded["rule"] == parse_rule(rule).text and recorded["kept_fraction"] == pytest.approx(4 / 9, abs=1e-6)
    assert sum(recorded["histogram"]["all"]) == 9 and sum(recorded["histogram"]["kept"]) == 4
    with Image.open(tmp_path / "b" / "sigma_hist.png") as png:
        assert png.size == (640, 400)
    # the rule is applied at merge time: a new rule on the same folder re-uses every shard
    again = curate(export, images, boxes, tmp_path / "b", rule="all", **CUR)
    assert again["shards_reused"] == again["shards"] and again["kept"] == 9


def test_restart_skips_written_shards(export: Path, dataset: tuple[Path, Path], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    images, boxes = dataset
    out = tmp_path / "out"
    first = curate(export, images, boxes, out, shard_size=2, **CUR)
    ref = np.load(out / OUTPUT_NAME)
    (out / "shards" / "shard-00002.npz").unlink()  # as if the job had stopped there
    calls: list[int] = []
    real = core.process_items
    monkeypatch.setattr(core, "process_items", lambda p, r, items, first_index=0, **kw: calls.append(first_index) or real(
        p, r, items, first_index, **kw))
    second = curate(export, images, boxes, out, shard_size=2, **CUR)
    assert calls == [4] and second["shards_reused"] == first["shards"] - 1
    z = np.load(out / OUTPUT_NAME)
    for k in ref.files:
        np.testing.assert_array_equal(z[k], ref[k])
    with pytest.raises(HpsedgeError, match="different curation job"):
        curate(export, images, boxes, out, shard_size=3, **CUR)
    calls.clear()
    third = curate(export, images, boxes, out, shard_size=3, force=True, **CUR)
    assert third["shards_reused"] == 0 and len(calls) == 3


def test_per_image_json_and_coco_boxes(export: Path, dataset: tuple[Path, Path], tmp_path: Path) -> None:
    images, boxes = dataset
    table = json.loads(boxes.read_text())
    per = tmp_path / "per"
    (per / "sub").mkdir(parents=True)
    coco: dict[str, Any] = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    for n, (key, bxs) in enumerate(sorted(table.items())):
        rel = next(p for p in (images / key, *images.rglob(Path(key).name)) if p.is_file()).relative_to(images)
        (per / rel.with_suffix(".json")).write_text(json.dumps({"boxes": bxs}) if n % 2 else json.dumps(bxs))
        coco["images"].append({"id": n, "file_name": rel.as_posix()})
        coco["annotations"] += [{"image_id": n, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
                                for b in bxs]
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    ref = [(n, b.tolist()) for n, b in plan_items(images, boxes)]
    assert [(n, b.tolist()) for n, b in plan_items(images, per)] == ref
    assert [(n, np.round(b, 6).tolist()) for n, b in plan_items(images, tmp_path / "coco.json")] == ref


def test_bad_input_gives_clear_errors(export: Path, dataset: tuple[Path, Path], tmp_path: Path) -> None:
    images, boxes = dataset
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no images"):
        curate(export, empty, boxes, tmp_path / "o", **CUR)
    (tmp_path / "none.json").write_text("{}")
    with pytest.raises(InputError, match="image set is empty"):
        curate(export, images, tmp_path / "none.json", tmp_path / "o", **CUR)
    (tmp_path / "other.json").write_text(json.dumps({"img1.jpg": TWO, "elsewhere/cat.jpg": TWO, "dog.jpg": []}))
    with pytest.raises(InputError, match=r"does not match .*2 of its 3 images are not there: elsewhere/cat.jpg, dog.jpg"):
        curate(export, images, tmp_path / "other.json", tmp_path / "o", **CUR)
    (tmp_path / "bare.json").write_text(json.dumps(TWO))
    with pytest.raises(InputError, match="bare list"):
        curate(export, images, tmp_path / "bare.json", tmp_path / "o", **CUR)
    per = tmp_path / "per"
    per.mkdir()
    (per / "img1.json").write_text("[]")
    with pytest.raises(InputError, match="no boxes file for 8 of 9 images"):
        curate(export, images, per, tmp_path / "o", **CUR)
    with pytest.raises(InputError, match="images folder not found"):
        curate(export, tmp_path / "missing", boxes, tmp_path / "o", **CUR)
    with pytest.raises(InputError, match="cannot parse rule"):
        curate(export, images, boxes, tmp_path / "o", rule="sigma", **CUR)


def test_unreadable_image_is_skipped_and_listed(export: Path, tmp_path: Path) -> None:
    images = tmp_path / "im"
    images.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(images / "ok.png")
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "b.json").write_text(json.dumps({"ok.png": [[0, 0, 60, 60]], "broken.jpg": [[0, 0, 10, 10]]}))
    s = curate(export, images, tmp_path / "b.json", tmp_path / "o", rule="all", **CUR)
    assert s["people"] == 1 and s["images_skipped"] == 1 and s["skipped"][0].startswith("broken.jpg: cannot read")


# ================================================================================================= Ray
def test_ray_and_local_give_identical_output(export: Path, dataset: tuple[Path, Path], tmp_path: Path,
                                             smpl_npz: Path, j_regressor_extra_path: Path) -> None:
    import ray

    images, boxes = dataset
    kw = {"smpl": smpl_npz, "j_regressor_extra": j_regressor_extra_path, **LOAD}  # keypoints (`part`) included
    local = curate(export, images, boxes, tmp_path / "local", rule="pelvis_sigma<0.5", shard_size=2, **kw)
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False)
    try:
        dist = curate(export, images, boxes, tmp_path / "ray", rule="pelvis_sigma<0.5", shard_size=2, ray="local",
                      **kw)
    finally:
        ray.shutdown()
    assert dist["engine"] == "ray (local)" and dist["shards"] == local["shards"] == 5
    a = np.load(tmp_path / "local" / OUTPUT_NAME)
    b = np.load(tmp_path / "ray" / OUTPUT_NAME)
    assert a.files == b.files
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for i in range(5):  # the shards themselves, people not kept included
        sa = np.load(tmp_path / "local" / "shards" / f"shard-{i:05d}.npz")
        sb = np.load(tmp_path / "ray" / "shards" / f"shard-{i:05d}.npz")
        for k in sa.files:
            np.testing.assert_array_equal(sa[k], sb[k], err_msg=f"shard {i}: {k}")
    assert {k: v for k, v in local.items() if k not in ("engine", "seconds")} == {
        k: v for k, v in dist.items() if k not in ("engine", "seconds")
    } | {"boxes": local["boxes"]}


# ================================================================================================= CLI
def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("curate")(curate_cmd)

    @app.command("noop")
    def noop() -> None:  # a second command, so that "curate" is a sub-command as in hpsedge
        pass

    return app


def test_curate_command(export: Path, dataset: tuple[Path, Path], tmp_path: Path) -> None:
    images, boxes = dataset
    res = CliRunner().invoke(_app(), ["curate", str(export), "-i", str(images), "-b", str(boxes), "-o",
                                      str(tmp_path / "o"), "--rule", "all", "--backend", "ort", "--device", "cpu",
                                      "--no-part"])
    assert res.exit_code == 0, res.output
    assert "kept 9 of 9 people" in res.output and "rule 'all'" in res.output
    assert (tmp_path / "o" / OUTPUT_NAME).is_file()
    res = CliRunner().invoke(_app(), ["curate", str(export), "-i", str(images), "-b", str(boxes), "--rule", "x<"])
    assert res.exit_code != 0 and isinstance(res.exception, InputError)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], None),
        (["--ray"], "local"),
        (["--ray", "--rule", "all"], "local"),
        (["--ray", "--ray-address", "ray://head:10001"], "ray://head:10001"),
        (["--ray-address", "ray://head:10001"], "ray://head:10001"),
    ],
)
def test_ray_option_and_address(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str],
                                              expected: str | None) -> None:
    seen: dict[str, Any] = {}

    def fake(*a: Any, **kw: Any) -> dict[str, Any]:
        seen.update(kw)
        return {"kept": 0, "people": 0, "kept_fraction": 0.0, "images": 0, "rule": "all", "engine": "x", "seconds": 0.0}

    monkeypatch.setattr(core, "curate", fake)
    res = CliRunner().invoke(_app(), ["curate", "exp", "-i", "im", "-b", "b.json", *args])
    assert res.exit_code == 0, res.output
    assert seen["ray"] == expected


def test_confidence_only_models_tokenhmr_style(tmp_path: Path) -> None:
    """No σ (TokenHMR): no ``var``; a confidence rule selects, a σ rule is refused."""
    from hpsedge.runtime.predictor import PersonResult

    class NoSigma:
        has_sigma = False

        def predict(self, image: np.ndarray, boxes: Any) -> list[PersonResult]:
            return [PersonResult(box=np.asarray(b, np.float32), center=np.zeros(2, np.float32), size=80.0,
                                 pose_rotmat=np.broadcast_to(np.eye(3, dtype=np.float32), (24, 3, 3)),
                                 pose_axis_angle=np.zeros((24, 3), np.float32), betas=np.zeros(10, np.float32),
                                 cam_crop=np.zeros(3, np.float32), transl=np.zeros(3, np.float32), focal=500.0,
                                 confidence=0.3 + 0.4 * i) for i, b in enumerate(boxes)]

    images = tmp_path / "im"
    images.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(images / "a.png")
    arrays = core.process_items(NoSigma(), images, [("a.png", np.array(TWO, float))])
    assert "var" not in arrays and arrays["confidence"].tolist() == pytest.approx([0.3, 0.7])
    (tmp_path / "out" / "shards").mkdir(parents=True)
    (tmp_path / "out" / "shards" / "shard-00000.npz").write_bytes(core.shard_to_bytes(arrays))
    s = core.merge_shards(tmp_path / "out", 1, parse_rule("confidence>0.5"), {"images": 1})
    z = np.load(tmp_path / "out" / OUTPUT_NAME)
    assert s["kept"] == 1 and "var" not in z.files and "score" not in z.files and z["person_id"].tolist() == [1]
    assert s["histogram"]["metric"] == "confidence"
    with pytest.raises(InputError, match="needs POCO's σ"):
        core.merge_shards(tmp_path / "out", 1, parse_rule("pelvis_sigma<0.3"), {"images": 1})
