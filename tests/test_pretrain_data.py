"""Pretraining clips: deterministic positions, parse alignment, resizing, fallbacks, bad items, YTF layout."""
import logging

import cv2
import numpy as np
import pytest
import torch

from helpers import make_items, toy_frames
from marlin.data.clips import PositionSampler, PretrainClips, _read_frames, sample_clip_indices, collate, open_items
from marlin.masking import MaskSpec, MaskStrategy, feature_pixels, token_parts
from marlin.models.config import MarlinConfig

GEOMETRY = MarlinConfig(img_size=32, patch_size=8, n_frames=8, tubelet_size=2)


def dataset(root, strategy="fasking", **kw):
    return PretrainClips(open_items(root), GEOMETRY, MaskSpec(strategy, 0.75), **{"sample_rate": 2, "seed": 0, **kw})


def test_positions_are_deterministic_and_aligned(tmp_path):
    ds = dataset(make_items(tmp_path))
    a, b, c = ds[4], ds[4], ds[5]
    assert a["video"].dtype == torch.uint8 and a["video"].shape == (3, 8, 32, 32)
    assert a["mask"].shape == (64,) and a["mask"].sum() == 16 and not a["mask_fallback"]
    assert torch.equal(a["video"], b["video"]) and torch.equal(a["mask"], b["mask"])
    assert not torch.equal(a["mask"], c["mask"])
    # the first epoch visits every item once
    assert sorted(ds.item_index(p) for p in range(3)) == [0, 1, 2]
    # the mask was made from this clip's own parse maps: fasking keeps background patches visible first
    rng = np.random.default_rng([0, 4])
    frames, parts, features = ds.load(ds.item_index(4), rng)
    assert features is None and "features" not in a  # only with feature_pixels
    assert parts.shape == (7, 4, 4, 4) and frames.shape == (8, 32, 32, 3)
    assert torch.equal(torch.from_numpy(frames).permute(3, 0, 1, 2), a["video"])
    background = parts[6].reshape(-1)
    assert background.sum() > 16 and not (a["mask"].numpy() & ~background).any()


def test_resizes_items_and_reads_frames_at_stride(tmp_path):
    make_items(tmp_path, n=1, t=40, s=48)
    ds = dataset(tmp_path)  # GEOMETRY: 32 px
    frames, parts, _ = ds.load(0, np.random.default_rng(1))
    assert frames.shape == (8, 32, 32, 3) and parts.shape == (7, 4, 4, 4)
    _, parse = ds._resize(frames[:0], ds.items[0].read_parse([0, 1]))
    assert parse.shape == (2, 32, 32) and set(np.unique(parse)) <= {0, 1, 6}  # nearest neighbour keeps labels
    # the cached per-item bits give the same membership as the clip's own parse maps
    idx, _ = ds.read_clip(0, np.random.default_rng(1))
    _, own = ds._resize(frames[:0], ds.items[0].read_parse(idx[::2]))
    assert np.array_equal(parts, token_parts(own, 8))


def test_missing_parse_falls_back_to_random(tmp_path, caplog):
    ds = dataset(make_items(tmp_path, n=1, parse=False), feature_pixels=True)
    with caplog.at_level(logging.WARNING):
        s = ds[0]
        ds[1]
    assert s["mask_fallback"] and s["mask"].sum() == 16
    assert not s["features"].any()  # no parse maps: an unweighted loss
    assert caplog.text.count("no parse maps") == 1 and "v0" in caplog.text


@pytest.mark.parametrize("cache_mb", [0, 64])
def test_feature_pixels_follow_the_clip_frames(tmp_path, cache_mb):
    make_items(tmp_path, n=2, t=40, s=48)
    ds = dataset(tmp_path, strategy="frame", feature_pixels=True, cache_mb=cache_mb)
    s = ds[3]
    assert not s["mask_fallback"] and s["features"].shape == (8, 32, 32) and s["features"].dtype == torch.bool
    rng = np.random.default_rng([0, 3])
    index = ds.item_index(3)
    idx, _ = ds.read_clip(index, rng)
    _, parse = ds._resize(np.zeros((0, 32, 32, 3), np.uint8), ds.items[index].read_parse(idx))
    assert np.array_equal(s["features"].numpy(), feature_pixels(parse)) and s["features"].any()
    assert (len(ds._features) > 0) == (cache_mb > 0)  # kept per item only within the cache budget
    b = collate([ds[0], ds[1]])
    assert b["features"].shape == (2, 8, 32, 32) and b["mask_fallback"].tolist() == [False, False]


def test_bad_item_is_reported_and_skipped(tmp_path, caplog):
    make_items(tmp_path, n=2)
    (tmp_path / "v1" / "clip.mp4").write_bytes(b"not a video")
    ds = dataset(tmp_path)
    with caplog.at_level(logging.WARNING):
        samples = [ds[p] for p in range(4)]
    assert all(s["video"].shape == (3, 8, 32, 32) for s in samples)
    assert "skipped" in caplog.text and "v1" in caplog.text


def test_ytf_layout(tmp_path):
    frames, parse = toy_frames(0, 20, 32)
    for k in range(20):
        d = tmp_path / "crop_images_DB" / "Some_One" / "0"
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{k:04d}.jpg"), frames[k][..., ::-1])
        p = tmp_path / "face_parsing_images_DB" / "Some_One" / "0"
        p.mkdir(parents=True, exist_ok=True)
        np.save(p / f"{k:04d}.npy", parse[k][None] if k != 3 else np.zeros((0, 32, 32), np.uint8))
    (tmp_path / "train_set.csv").write_text("path,len\nSome_One/0,20\n")
    items = open_items(tmp_path, "train")
    assert len(items) == 1 and items[0].num_frames == 20
    ds = PretrainClips(items, GEOMETRY, MaskSpec(MaskStrategy.FASKING, 0.75), 2, 0)
    s = ds[0]
    assert not s["mask_fallback"] and s["video"].shape == (3, 8, 32, 32)
    p = items[0].read_parse([2, 3])
    assert p.shape == (2, 32, 32) and (p[1] == 0).all() and (p[0] == 6).any()


def test_sampler_ranks_partition_the_global_batch():
    single = list(PositionSampler(4, 0, 1, start=3, limit=5))
    r0 = list(PositionSampler(2, 0, 2, start=3, limit=5))
    r1 = list(PositionSampler(2, 1, 2, start=3, limit=5))
    assert single == list(range(12, 20))
    for k in range(2):  # micro-batch k: both ranks together hold the single process's batch
        assert sorted(r0[2 * k:2 * k + 2] + r1[2 * k:2 * k + 2]) == single[4 * k:4 * k + 4]


def test_collate(tmp_path):
    ds = dataset(make_items(tmp_path, n=2))
    b = collate([ds[0], ds[1]])
    assert b["video"].shape == (2, 3, 8, 32, 32) and b["mask"].shape == (2, 64)
    assert b["position"].tolist() == [0, 1]


def test_item_list_file(tmp_path):
    make_items(tmp_path, n=3)
    (tmp_path / "train.txt").write_text("v0\nv2\n")
    items = open_items(tmp_path / "train.txt")
    assert [i.root.name for i in items] == ["v0", "v2"]


def test_split_files_select_preprocessed_items(tmp_path):
    make_items(tmp_path / "Some_One", n=3)  # items Some_One/v0..v2, as `marlin preprocess --layout ytf` names them
    (tmp_path / "train_set.csv").write_text("path,len\nSome_One/v0,20\nSome_One/v1,20\nSome_One/gone,20\n")
    (tmp_path / "val_set.csv").write_text("path,len\nSome_One/v2,20\n")
    assert [i.root.name for i in open_items(tmp_path, "train")] == ["v0", "v1"]
    assert [i.root.name for i in open_items(tmp_path, "val")] == ["v2"]


def test_clip_indices_and_strided_decoding(tmp_path):
    rng = np.random.default_rng(0)
    starts = {int(sample_clip_indices(100, 16, 2, rng)[0]) for _ in range(300)}
    assert min(starts) == 0 and max(starts) == 100 - 32  # official: start uniform in [0, total - L*r]
    idx = sample_clip_indices(20, 16, 2, np.random.default_rng(0))  # short video: repeat the last frame on the grid
    assert idx.tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18] + [18] * 6
    make_items(tmp_path, n=1, t=45)
    item = open_items(tmp_path)[0]
    for seed in range(3):  # decoding only the strided frames == reading them by index
        idx = sample_clip_indices(45, 8, 2, np.random.default_rng(seed))
        assert np.array_equal(_read_frames(item, idx, 2), item.read_frames(idx))
    idx = sample_clip_indices(45, 16, 3, np.random.default_rng(0))
    assert np.array_equal(_read_frames(item, idx, 3), item.read_frames(idx))


def test_decoded_video_cache_gives_the_same_samples_within_its_budget(tmp_path):
    make_items(tmp_path, n=3, t=20, s=48)  # stored at 48 px, resized to 32 px
    plain, cached = dataset(tmp_path), dataset(tmp_path, cache_mb=2 * 20 * 32 * 32 * 3 / 2 ** 20)  # room for 2
    for p in range(9):  # three epochs
        a, b = plain[p], cached[p]
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["mask"], b["mask"])
    assert len(cached._videos) == 2 and cached._cache_left >= 0  # the third item is decoded per clip
    assert next(iter(cached._videos.values())).shape == (20, 32, 32, 3)
