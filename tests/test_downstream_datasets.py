"""Each dataset adapter on a tiny dataset fabricated in its published layout."""
import csv
import json
import shutil

import numpy as np
import pytest

from conftest import ROOT, SAMPLES
from helpers import tiny_config
from marlin.downstream.datasets import DatasetError, load_dataset
from marlin.downstream.datasets.mosei import EMOTIONS
from marlin.video import write_video


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    """One real tiny video, copied wherever a layout needs a video file."""
    p = tmp_path_factory.mktemp("v") / "tiny.mp4"
    write_video(p, np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8), fps=25)
    return p


def _put(mp4, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(mp4, path)


def _frames(folder, n=3):
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), np.full((24, 24, 3), 40 * i, np.uint8))


def _celebvhq(root, mp4, ids, with_lists):
    appearance = [f"app_{i}" for i in range(40)]
    action = [f"act_{i}" for i in range(35)]
    rng = np.random.default_rng(0)
    clips = {}
    for k, cid in enumerate(ids):
        clips[cid] = {"attributes": {"appearance": rng.integers(0, 2, 40).tolist(),
                                     "action": rng.integers(0, 2, 35).tolist(),
                                     "emotion": {"sep_flag": k == 1, "labels": ["happy", "neutral"][k % 2]}}}
    info = {"meta_info": {"appearance_mapping": appearance, "action_mapping": action,
                          "emotion_mapping": ["neutral", "happy", "sad"]}, "clips": clips}
    (root / "celebvhq_info.json").write_text(json.dumps(info))
    for cid in ids[:-1]:  # the last clip has no video
        _put(mp4, root / "cropped" / f"{cid}.mp4")
    if with_lists:
        (root / "train.txt").write_text("\n".join(f"{c}.mp4" for c in ids[:6]) + "\n")
        (root / "val.txt").write_text(f"{ids[6]}\n{ids[7]}\n")
        (root / "test.txt").write_text(f"{ids[8]}\n{ids[9]}\nnot_a_clip\n")
    return info


def test_celebvhq_lists_labels_and_skips(tmp_path, mp4):
    ids = [f"clip{i:02d}" for i in range(10)]
    info = _celebvhq(tmp_path, mp4, ids, with_lists=True)
    ds = load_dataset("celebvhq", tmp_path, "appearance")
    assert ds.task.kind == "multilabel" and len(ds.task.labels) == 40 and ds.task.labels[3] == "app_3"
    assert [s.key for s in ds.splits["train"]] == ids[:6]
    assert np.array_equal(ds.splits["train"][2].target, info["clips"]["clip02"]["attributes"]["appearance"])
    assert [s.key for s in ds.splits["test"]] == ["clip08"]  # clip09 has no video, not_a_clip no labels
    assert any("clip09" in m and "no video" in m for m in ds.skipped)
    assert any("not_a_clip" in m for m in ds.skipped)
    act = load_dataset("celebvhq", tmp_path, "action")
    assert len(act.task.labels) == 35 and act.splits["val"][0].target.shape == (35,)
    emo = load_dataset("celebvhq", tmp_path, "emotion")
    assert emo.task.kind == "multiclass"
    assert "clip01" not in [s.key for s in emo.splits["train"]]  # sep_flag: several emotions
    assert [s.target for s in emo.splits["train"]] == [1, 1, 0, 1, 0]  # happy = 1, neutral = 0


def test_celebvhq_sorted_split_and_items(tmp_path, mp4):
    from marlin.data.layout import write_item

    ids = [f"c{i:02d}" for i in range(10)]
    _celebvhq(tmp_path, mp4, ids, with_lists=False)
    shutil.rmtree(tmp_path / "cropped")
    for cid in ids:  # preprocessed items instead of cropped/*.mp4
        write_item(tmp_path / cid, np.zeros((4, 16, 16, 3), np.uint8), {"fps": 25})
    ds = load_dataset("celebvhq", tmp_path, "appearance")
    assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [8, 1, 1]
    assert [s.key for s in ds.splits["train"]] == [f"{c}/clip" for c in ids[:8]]
    assert ds.splits["test"][0].source == tmp_path / "c09" / "clip.mp4"


def test_celebvhq_emotion_without_mapping_says_where_labels_come_from(tmp_path, mp4):
    ids = [f"clip{i:02d}" for i in range(10)]
    info = _celebvhq(tmp_path, mp4, ids, with_lists=True)
    del info["meta_info"]["emotion_mapping"]
    info["clips"]["clip02"]["attributes"]["emotion"]["labels"] = "bored"  # not a class
    (tmp_path / "celebvhq_info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=r"celebvhq_info.json: meta_info has no 'emotion_mapping'.*"
                                           r"official celebvhq_info.json.*dataset_options.emotions"):
        load_dataset("celebvhq", tmp_path, "emotion")
    assert len(load_dataset("celebvhq", tmp_path, "appearance").splits["train"]) == 6  # other tasks unaffected
    emo = load_dataset("celebvhq", tmp_path, "emotion", emotions=["neutral", "happy"])
    assert emo.task.labels == ("neutral", "happy")
    assert [s.target for s in emo.splits["train"]] == [1, 0, 1, 0]  # clip02's label is not a class: reported
    assert any("clip02" in m and "'bored' is not one of ['neutral', 'happy']" in m for m in emo.skipped)


def test_celebvhq_bad_info_names_the_file(tmp_path):
    (tmp_path / "celebvhq_info.json").write_text("{not json")
    with pytest.raises(DatasetError, match="celebvhq_info.json"):
        load_dataset("celebvhq", tmp_path, "appearance")


def test_generic_csv_multilabel_split_column_and_items(tmp_path, mp4):
    from marlin.data.layout import write_item

    rows = [["path", "smile", "hat", "split"]]
    for i in range(6):
        write_item(tmp_path / "items" / f"v{i}", np.zeros((4, 16, 16, 3), np.uint8), {"fps": 25})
        rows.append([f"items/v{i}", str(i % 2), str(i // 3), ["train", "train", "train", "val", "test", "test"][i]])
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    ds = load_dataset("csv", tmp_path, csv="labels.csv")
    assert ds.task.kind == "multilabel" and ds.task.labels == ("smile", "hat")
    assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [3, 1, 2]
    assert ds.splits["test"][1].target.tolist() == [1, 1]
    assert ds.splits["train"][0].key == "items/v0/clip"


def test_generic_csv_class_names_with_split_lists(tmp_path, mp4):
    names = ["happy", "sad", "angry"]
    lines = ["video,label"] + [f"vids/{i}.mp4,{names[i % 3]}" for i in range(9)]
    (tmp_path / "expr.csv").write_text("\n".join(lines) + "\n")
    for i in range(9):
        _put(mp4, tmp_path / "vids" / f"{i}.mp4")
    (tmp_path / "train.txt").write_text("vids/0\nvids/1\nvids/2\nvids/3\nvids/4\n")
    (tmp_path / "val.txt").write_text("vids/5.mp4\n")
    (tmp_path / "test.txt").write_text("vids/6\nvids/7\nvids/8\n")
    ds = load_dataset("csv", tmp_path, csv="expr.csv", task="expression")
    assert ds.task.kind == "multiclass" and ds.task.labels == ("angry", "happy", "sad")
    assert [s.target for s in ds.splits["train"]] == [1, 2, 0, 1, 2]
    assert ds.task.name == "expression"
    (tmp_path / "bad.csv").write_text("video,label\nvids/0.mp4\n")
    with pytest.raises(DatasetError, match="bad.csv: line 2"):
        load_dataset("csv", tmp_path, csv="bad.csv")


def test_generic_csv_binary_sorted_split(tmp_path, mp4):
    lines = ["path,fake"] + [f"{i:02d}.mp4,{i % 2}" for i in range(20)]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    for i in range(19):
        _put(mp4, tmp_path / f"{i:02d}.mp4")
    ds = load_dataset("csv", tmp_path)
    assert ds.task.kind == "binary"
    assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [16, 2, 1]  # 19.mp4 missing
    assert any("19.mp4" in m for m in ds.skipped)


def _ffpp(root, mp4, comp="c40"):
    pairs = {"train": [["000", "001"], ["002", "003"]], "val": [["004", "005"]], "test": [["006", "007"]]}
    (root / "splits").mkdir(parents=True)
    for split, p in pairs.items():
        (root / "splits" / f"{split}.json").write_text(json.dumps(p))
        for a, b in p:
            for v in (a, b):
                _put(mp4, root / "original_sequences" / "youtube" / comp / "videos" / f"{v}.mp4")
            for m in ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"):
                for x, y in ((a, b), (b, a)):
                    _put(mp4, root / "manipulated_sequences" / m / comp / "videos" / f"{x}_{y}.mp4")
    return pairs


def test_ffpp_pairs_give_real_and_fake_videos(tmp_path, mp4):
    _ffpp(tmp_path, mp4)
    (tmp_path / "manipulated_sequences/FaceSwap/c40/videos/000_001.mp4").unlink()
    ds = load_dataset("ffpp", tmp_path, "real_fake", compression="c40")
    train = ds.splits["train"]
    assert sum(s.target == 0 for s in train) == 4  # 2 pairs -> 4 real
    assert sum(s.target == 1 for s in train) == 2 * 2 * 4 - 1  # 2 fakes per pair per method, one missing
    assert any("000_001" in m for m in ds.skipped)
    assert len(ds.splits["test"]) == 2 + 8
    keys = {s.key for s in train}
    assert "original_sequences/youtube/c40/videos/000" in keys
    assert "manipulated_sequences/Deepfakes/c40/videos/002_003" in keys
    method = load_dataset("ffpp", tmp_path, "method", compression="c40")
    assert method.task.labels == ("real", "Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
    assert sorted({s.target for s in method.splits["val"]}) == [0, 1, 2, 3, 4]
    with pytest.raises(DatasetError, match="c23"):
        load_dataset("ffpp", tmp_path, "real_fake", compression="c23")


def _mosei_rows():
    # video -> [(sentiment, happy, sad, anger, surprise, disgust, fear), interval]
    return {"vidA": [([-2.6, 0.0, 1.3, 0.6, 0, 0, 0], (0.0, 0.2)), ([0.4, 1.0, 0, 0, 0, 0, 0.3], (0.1, 0.3))],
            "vidB": [([3.4, 2.0, 0, 0, 0.6, 0, 0], (0.0, 0.25))],
            "vidC": [([0.0, 0, 0, 0, 0, 0.3, 0], (0.05, 0.3)), ([-0.2, 0, 0.6, 0, 0, 0, 0], (0.3, 0.3))]}


def _mosei_csd(path, rows):
    import h5py

    with h5py.File(path, "w") as f:
        g = f.create_group("All Labels")
        data = g.create_group("data")
        for vid, segs in rows.items():
            v = data.create_group(vid)
            v.create_dataset("features", data=np.array([s[0] for s in segs], np.float32))
            v.create_dataset("intervals", data=np.array([s[1] for s in segs], np.float64))
        meta = g.create_group("metadata")
        meta.attrs["root name"] = "All Labels"


def test_mosei_csd_tasks_and_folds(tmp_path, mp4):
    rows = _mosei_rows()
    _mosei_csd(tmp_path / "CMU_MOSEI_Labels.csd", rows)
    for vid in rows:
        _put(mp4, tmp_path / "Raw/Videos/Full/Combined" / f"{vid}.mp4")
    (tmp_path / "folds.json").write_text(json.dumps({"train": ["vidA"], "valid": ["vidB"], "test": ["vidC", "vidZ"]}))
    emo = load_dataset("mosei", tmp_path, "emotion")
    assert emo.task.labels == EMOTIONS
    assert [s.target.tolist() for s in emo.splits["train"]] == [[0, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 1]]
    assert [s.key for s in emo.splits["train"]] == ["vidA/0000", "vidA/0001"]
    assert emo.splits["train"][1].start == pytest.approx(0.1) and emo.splits["train"][1].end == pytest.approx(0.3)
    assert len(emo.splits["test"]) == 1  # vidC's second interval is empty; vidZ has no labels
    assert any("vidZ" in m for m in emo.skipped) and any("empty interval" in m for m in emo.skipped)
    s7 = load_dataset("mosei", tmp_path, "sentiment7")
    assert [s.target for s in s7.splits["train"] + s7.splits["val"]] == [0, 4, 6]  # -2.6 -> -3, 0.4 -> 1, 3.4 -> 3
    s2 = load_dataset("mosei", tmp_path, "sentiment2")
    assert [s.target for s in s2.splits["train"] + s2.splits["test"]] == [0, 1, 1]  # 0.0 is non-negative
    assert s2.task.labels == ("negative", "non-negative")
    pos = load_dataset("mosei", tmp_path, "sentiment2", binary="positive")  # the post-2019 convention
    assert [s.target for s in pos.splits["train"]] == [0, 1] and pos.splits["test"] == []
    assert pos.task.labels == ("negative", "positive") and any("vidC[0]: sentiment 0" in m for m in pos.skipped)
    with pytest.raises(ValueError, match="binary rule"):
        load_dataset("mosei", tmp_path, "sentiment2", binary="zero")


def test_mosei_sentiment7_uses_the_sdk_bins_on_boundaries(tmp_path, mp4):
    """CMU-MultimodalSDK cmumosei_round: < -2 -> -3, [-2,-1) -> -2, [-1,0) -> -1, 0 -> 0, (0,1] -> 1,
    (1,2] -> 2, > 2 -> 3; labels are annotator means in thirds, where round-to-nearest disagrees."""
    from marlin.downstream.datasets.mosei import cmumosei_round

    scores = [-3, -2.5, -2, -1.6667, -1, -0.3333, 0, 0.3333, 1, 1.3333, 2, 2.3333, 3]
    expected = [-3, -3, -2, -2, -1, -1, 0, 1, 1, 2, 2, 3, 3]
    assert [cmumosei_round(x) for x in scores] == expected
    # through the dataset: a .csd (float32, as the SDK's) with one segment per score
    rows = {"vid": [([x, 0, 0, 0, 0, 0, 0], (i * 0.01, i * 0.01 + 0.01)) for i, x in enumerate(scores)]}
    _mosei_csd(tmp_path / "CMU_MOSEI_Labels.csd", rows)
    _put(mp4, tmp_path / "Raw/Videos/Full/Combined/vid.mp4")
    (tmp_path / "folds.json").write_text(json.dumps({"train": ["vid"], "valid": [], "test": []}))
    ds = load_dataset("mosei", tmp_path, "sentiment7")
    assert [ds.task.labels[s.target] for s in ds.splits["train"]] == [str(c) for c in expected]


def test_mosei_csv_equivalent_and_segment_cut(tmp_path):
    from marlin.downstream.sources import materialize
    from marlin.video import count_frames

    for v in ("vidA", "vidB"):
        write_video(tmp_path / "Raw/Videos/Full/Combined" / f"{v}.mp4",
                    np.random.default_rng(0).integers(0, 255, (25, 32, 32, 3), dtype=np.uint8), fps=25)
    lines = ["video,start,end,sentiment," + ",".join(EMOTIONS) + ",split",
             "vidA,0.2,0.6,1.0,1,0,0,0,0,0,train", "vidB,0.0,0.2,-1.0,0,1,0,0,0,0,test"]
    (tmp_path / "mosei_labels.csv").write_text("\n".join(lines) + "\n")
    ds = load_dataset("mosei", tmp_path, "sentiment2")
    assert [s.target for s in ds.splits["train"]] == [1] and [s.target for s in ds.splits["test"]] == [0]
    seg = materialize(ds.splits["train"][0], tmp_path / "cache")
    assert seg.parent == tmp_path / "cache/.segments/vidA" and seg.name.startswith("0000.")
    assert count_frames(seg) == 10  # frames 5..14 of 25 fps
    import dataclasses  # the same key cut from another interval (an edited label table) is another file

    longer = materialize(dataclasses.replace(ds.splits["train"][0], end=0.8), tmp_path / "cache")
    assert longer != seg and count_frames(longer) == 15 and count_frames(seg) == 10
    (tmp_path / "mosei_labels.csv").write_text("\n".join(lines + ["vidA,0.6,0.8,1.0,1,0,0,0,0,0,test"]) + "\n")
    with pytest.raises(DatasetError, match="vidA is in two splits"):
        load_dataset("mosei", tmp_path, "emotion")
    (tmp_path / "mosei_labels.csv").write_text("video,start\nvidA,0\n")
    with pytest.raises(DatasetError, match="missing columns"):
        load_dataset("mosei", tmp_path, "emotion")


def test_mosei_bad_csd_names_the_file(tmp_path):
    (tmp_path / "CMU_MOSEI_Labels.csd").write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="CMU_MOSEI_Labels.csd"):
        load_dataset("mosei", tmp_path, "emotion")


def test_dfew_folds_frames_and_validation_holdout(tmp_path):
    split = tmp_path / "EmoLabel_DataSplit"
    (split / "train(single-labeled)").mkdir(parents=True)
    (split / "test(single-labeled)").mkdir(parents=True)
    train = [(i, (i % 7) + 1) for i in range(1, 29)]
    (split / "train(single-labeled)/set_2.csv").write_text(
        "video_name,label\n" + "".join(f"{v},{l}\n" for v, l in train))
    (split / "test(single-labeled)/set_2.csv").write_text("video_name,label\n29,7\n30,1\n")
    for v in range(1, 31):
        _frames(tmp_path / "Clip/clip_224x224" / f"{v:05d}")
    ds = load_dataset("dfew", tmp_path, fold=2)
    assert ds.task.labels[0] == "happy" and ds.task.metric == "uar"
    assert len(ds.splits["train"]) + len(ds.splits["val"]) == 28
    assert sorted(s.target for s in ds.splits["val"]) == list(range(7))  # 10% stratified: one per class
    assert [(s.key, s.target) for s in ds.splits["test"]] == [("00029", 6), ("00030", 0)]
    assert ds.splits["test"][0].source.is_dir()
    with pytest.raises(DatasetError, match="set_1.csv"):
        load_dataset("dfew", tmp_path, fold=1)


def test_ferv39k_list_and_frames(tmp_path):
    lists = tmp_path / "4_setups/All_scenes"
    lists.mkdir(parents=True)
    names = ["Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"]
    (lists / "train_All.csv").write_text(  # as distributed: a header, "<path> <Class>" per line
        "path emotion\n" + "".join(f"Action/Scene/{i:04d} {names[i % 7]}\n" for i in range(14)))
    (lists / "test_All.csv").write_text("Action/Scene/0100 6\n")
    for i in list(range(14)) + [100]:
        _frames(tmp_path / "2_ClipsforFaceCrop/Action/Scene" / f"{i:04d}")
    ds = load_dataset("ferv39k", tmp_path)
    assert ds.task.labels == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    assert [(s.key, s.target) for s in ds.splits["test"]] == [("Action/Scene/0100", 6)]
    assert len(ds.splits["train"]) == 7 and len(ds.splits["val"]) == 7
    assert sorted(s.target for s in ds.splits["val"]) == list(range(7))
    assert {s.key: s.target for s in ds.splits["train"] + ds.splits["val"]}["Action/Scene/0005"] == 5  # Sad


def test_mafw_names_and_ids(tmp_path, mp4):
    fold = tmp_path / "Train & Test Set/single/no_caption/set_3"
    fold.mkdir(parents=True)
    (fold / "train.txt").write_text("".join(f"{i:05d}.mp4 {n}\n" for i, n in enumerate(
        ["anger", "contempt", "disappointment", "happiness"] * 3)))
    (fold / "test.txt").write_text("00100.mp4 11\n00101.mp4 1\n")
    for i in list(range(12)) + [100]:
        _put(mp4, tmp_path / "data/clips" / f"{i:05d}.mp4")
    _frames(tmp_path / "data/frames" / "00101")  # only frames for this clip
    ds = load_dataset("mafw", tmp_path, fold=3)
    assert len(ds.task.labels) == 11
    assert [s.target for s in ds.splits["test"]] == [10, 0]
    assert ds.splits["test"][1].source == tmp_path / "data/frames/00101"
    assert sorted({s.target for s in ds.splits["train"] + ds.splits["val"]}) == [0, 3, 7, 10]
    (fold / "test.txt").write_text("00100.mp4 12\n")
    with pytest.raises(DatasetError, match="outside 1..11"):
        load_dataset("mafw", tmp_path, fold=3)


def test_synthetic_world_label_files_and_probe_dataset(tmp_path):
    """The synthetic generator's CelebV-HQ-style and CSV label files load, and probe_dataset runs on them."""
    from marlin.downstream import probe_dataset
    from marlin.models import Marlin
    from marlin.synth.dataset import generate_dataset

    generate_dataset(tmp_path, 12, frames=8, size=32, progress=False)
    train_ids = (tmp_path / "train.txt").read_text().split()
    ds = load_dataset("celebvhq", tmp_path, "appearance")
    assert [s.key for s in ds.splits["train"]] == [f"{i}/clip" for i in train_ids]
    assert ds.splits["train"][0].source == tmp_path / train_ids[0] / "clip.mp4"
    man = load_dataset("csv", tmp_path, task="manipulated", csv="labels/manipulated.csv")
    assert man.task.kind == "binary" and [s.key for s in man.splits["train"]] == [s.key for s in ds.splits["train"]]
    cfg = tiny_config(decoder_embed_dim=16)
    model = Marlin(cfg, full_model=False)
    r1 = probe_dataset(model, ds, tmp_path / "feats", max_epochs=50)
    r2 = probe_dataset(model, ds, tmp_path / "feats", max_epochs=50)  # from the cache
    np.testing.assert_equal(r1["test"], r2["test"])  # deterministic (NaN AUC of a one-class label included)
    assert r1["task"]["name"] == "appearance" and r1["skipped"] == [] and r1["test"]["n"] == len(ds.splits["test"])
    # `marlin extract` naming, inside the cache folder of this model's feature record
    assert len(list((tmp_path / "feats").glob(f"*/{train_ids[0]}/clip.npy"))) == 1


def test_items_adapter_reads_meta_labels(tmp_path):
    from marlin.data.layout import write_item

    frames = np.zeros((4, 16, 16, 3), np.uint8)
    for i in range(10):
        labels = {"attrs": [i % 2, 1 - i % 2, 0], "expr": ["happy", "sad"][i % 2], "fake": bool(i % 3 == 0)}
        write_item(tmp_path / "set" / f"it{i}", frames, {"fps": 25, "labels": labels})
    write_item(tmp_path / "set" / "nolabel", frames, {"fps": 25})
    (tmp_path / "train.txt").write_text("".join(f"set/it{i}\n" for i in range(6)) + "set/nolabel\n")
    (tmp_path / "val.txt").write_text("set/it6\nset/it7\n")
    (tmp_path / "test.txt").write_text("set/it8\nset/it9\n")
    attrs = load_dataset("items", tmp_path, "attrs", labels=["a", "b", "c"])
    assert attrs.task.kind == "multilabel" and attrs.task.labels == ("a", "b", "c")
    assert [s.target.tolist() for s in attrs.splits["test"]] == [[0, 1, 0], [1, 0, 0]]
    assert attrs.splits["train"][0].key == "set/it0/clip" and any("nolabel" in m for m in attrs.skipped)
    expr = load_dataset("items", tmp_path, "expr")
    assert expr.task.kind == "multiclass" and expr.task.labels == ("happy", "sad")
    assert [s.target for s in expr.splits["val"]] == [0, 1]
    fake = load_dataset("items", tmp_path, "fake")
    assert fake.task.kind == "binary" and [s.target for s in fake.splits["train"]] == [1, 0, 0, 1, 0, 0]
    with pytest.raises(DatasetError, match="no item has the label 'age'"):
        load_dataset("items", tmp_path, "age")


def test_mosei_sdk_fold_file_is_read_as_data(tmp_path, mp4):
    rows = _mosei_rows()
    _mosei_csd(tmp_path / "CMU_MOSEI_Labels.csd", rows)
    for vid in rows:
        _put(mp4, tmp_path / "Raw/Videos/Full/Combined" / f"{vid}.mp4")
    (tmp_path / "cmu_mosei_std_folds.py").write_text(
        "standard_train_fold = ['vidB', 'vidC']\nstandard_valid_fold=['vidA']\nstandard_test_fold = []\n"
        "import os\nos.remove(__file__)\n")  # never executed
    ds = load_dataset("mosei", tmp_path, "sentiment2")
    assert [s.key for s in ds.splits["train"]] == ["vidB/0000", "vidC/0000"] and len(ds.splits["val"]) == 2
    assert (tmp_path / "cmu_mosei_std_folds.py").exists()


def test_ffpp_paper_training_set_size(tmp_path):
    """360 official-style training pairs give the paper's 720 real + 2880 fake videos."""
    pairs = [[f"{2 * i:03d}", f"{2 * i + 1:03d}"] for i in range(360)]
    (tmp_path / "splits").mkdir()
    for split in ("train", "val", "test"):
        (tmp_path / "splits" / f"{split}.json").write_text(json.dumps(pairs if split == "train" else pairs[:1]))
    real = tmp_path / "original_sequences/youtube/c40/videos"
    real.mkdir(parents=True)
    for p in pairs:
        for v in p:
            (real / f"{v}.mp4").touch()
    for m in ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"):
        fake = tmp_path / "manipulated_sequences" / m / "c40/videos"
        fake.mkdir(parents=True)
        for a, b in pairs:
            (fake / f"{a}_{b}.mp4").touch()
            (fake / f"{b}_{a}.mp4").touch()
    ds = load_dataset("ffpp", tmp_path, "real_fake", compression="c40")
    targets = [s.target for s in ds.splits["train"]]
    assert targets.count(0) == 720 and targets.count(1) == 2880 and not ds.skipped


def _ffpp_recipe(doc_text: str) -> list[str]:
    """The `marlin preprocess` lines of the fenced bash block in docs/downstream.md's FaceForensics++ section."""
    import re

    section = doc_text.split("**FaceForensics++**", 1)[1].split("**DFEW", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip().startswith("marlin preprocess")]


def test_ffpp_documented_preprocess_recipe_finds_every_sample(tmp_path):
    """Follow docs/downstream.md literally on a tiny raw FF++ download (face videos): the FT config then finds
    every real and fake video among the face crops, and the configs' comments give the same commands."""
    import shlex

    import cv2

    from marlin.cli import main
    from marlin.downstream.config import load_run_config
    from marlin.video import read_frames

    recipe = _ffpp_recipe((ROOT / "docs" / "downstream.md").read_text())
    assert len(recipe) == 2
    for name in ("ffpp_c23_ft", "ffpp_c40_ft"):
        text = (ROOT / "marlin" / "configs" / "downstream" / f"{name}.yaml").read_text()
        assert all(f"#   {line}\n" in text for line in recipe), name
    root = tmp_path / "FaceForensics++"
    frames = read_frames(SAMPLES / "video01.mp4", range(0, 8, 2))  # a face, 4 frames
    frames = np.stack([cv2.resize(f, (120, 90)) for f in frames])
    pairs = {"train": [["000", "001"]], "val": [["002", "003"]], "test": [["004", "005"]]}
    (root / "splits").mkdir(parents=True)
    for split, ps in pairs.items():
        (root / "splits" / f"{split}.json").write_text(json.dumps(ps))
        for a, b in ps:
            for v in (a, b):
                write_video(root / "original_sequences/youtube/c23/videos" / f"{v}.mp4", frames, fps=6)
            for m in ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"):
                for x, y in ((a, b), (b, a)):
                    write_video(root / "manipulated_sequences" / m / "c23/videos" / f"{x}_{y}.mp4", frames, fps=6)
    for line in recipe:
        args = shlex.split(line.replace("ROOT", str(root)))
        assert args[0] == "marlin" and main(args[1:] + ["--quiet"]) == 0, line
    cfg = load_run_config("ffpp_c23_ft", values={"root": str(root)})
    ds = load_dataset(cfg.dataset, cfg.root, cfg.task, **cfg.dataset_options)
    assert not ds.skipped
    assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [2 + 8] * 3  # 2 real + 2 fakes x 4 methods
    for s in (s for split in ds.splits.values() for s in split):
        assert s.source.is_relative_to(root / "preprocessed") and s.source.name == "clip.mp4"
    # before preprocessing, the FT config names the missing folder and the commands
    shutil.rmtree(root / "preprocessed")
    with pytest.raises(DatasetError, match=r"preprocessed/original_sequences.*marlin preprocess"):
        load_dataset(cfg.dataset, cfg.root, cfg.task, **cfg.dataset_options)
