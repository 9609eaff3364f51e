"""`marlin shard` and the shard stream: bit-exact round trip, rank/worker split, exact resume, refused records."""
import json

import numpy as np
import pytest
import torch
from helpers import TINY_PRETRAIN, make_items
from torch.utils.data import DataLoader

from marlin.cli import main
from marlin.data.clips import PretrainClips, open_items
from marlin.data.layout import write_item
from marlin.data.shards import (
    RankOrder,
    ShardStream,
    buffer_shuffle,
    expand_braces,
    open_shards,
    shard_dataset,
    write_shards,
)
from marlin.errors import MarlinError
from marlin.masking import MaskSpec, MaskStrategy
from marlin.models.config import MarlinConfig

GEOMETRY = MarlinConfig(img_size=32, patch_size=8, n_frames=8, tubelet_size=2)
MASK = MaskSpec(MaskStrategy.FASKING, 0.75)
CLIPS = dict(geometry=GEOMETRY, mask=MASK, sample_rate=2, seed=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Five H.264 items (one without parse maps), one JPEG-frame item, one of another size (resized when read)."""
    root = make_items(tmp_path_factory.mktemp("items"), n=4, t=20)
    make_items(root / "noparse", n=1, t=20, parse=False)
    from helpers import toy_frames

    frames, parse = toy_frames(7, 18, 32)
    write_item(root / "jpg", frames, {"fps": 25.0}, parse=parse, as_jpg=True)
    frames, parse = toy_frames(8, 20, 48)
    write_item(root / "big", frames, {"fps": 25.0}, parse=parse)
    return root


@pytest.mark.parametrize("video", ["copy", "raw"])
def test_round_trip_equals_the_folder_reader(data, tmp_path, video):
    record = write_shards(data, tmp_path / "sh", "30KB", img_size=32, patch_size=8, video=video, progress=False)
    assert len(record["shards"]) >= 2 and record["samples"] == 7 and record["complete"]
    ds = shard_dataset(tmp_path / "sh", **CLIPS)
    ref = PretrainClips(open_items(data), **CLIPS, feature_pixels=True)
    ds.feature_pixels = True
    where = {it.root.relative_to(data).as_posix(): i for i, it in enumerate(ref.items)}
    assert sorted(ds.items[i].name for i in range(len(ds.items))) == sorted(where)
    for i in range(len(ds.items)):
        for position in (3, 11):
            a, b = ds.sample(i, position), ref.sample(where[ds.items[i].name], position)
            assert a["mask_fallback"] == b["mask_fallback"]
            for k in ("video", "mask", "features"):
                assert torch.equal(a[k], b[k]), (ds.items[i].name, k)
    # the part map was stored, not recomputed: it equals the folder reader's own computation
    i = next(i for i in range(len(ds.items)) if ds.items[i].name == "v1")
    assert np.array_equal(ds.items[i].part_bits, ref.part_bits(where["v1"]))
    assert list(ds._bits.values()) == [None]  # only the item without parse maps (its warning given once)
    # a second run into the same OUT with the same record does nothing
    again = write_shards(data, tmp_path / "sh", "30KB", img_size=32, patch_size=8, video=video, progress=False)
    assert again == record


def test_ranks_and_workers_cover_every_sample_once_per_epoch(data, tmp_path):
    write_shards(data, tmp_path / "sh", "10KB", img_size=32, patch_size=8, progress=False)
    counts = open_shards(tmp_path / "sh").counts
    assert len(counts) >= 4
    for world in (1, 2, 3):
        seen = np.concatenate([RankOrder(counts, 0, r, world, 3).epoch(1) for r in range(world)])
        assert sorted(seen.tolist()) == list(range(sum(counts)))  # every sample exactly once per epoch
    a, b = RankOrder(counts, 0, 0, 1, 3), RankOrder(counts, 0, 0, 1, 3)
    assert [a[n] for n in range(20)] == [b[n] for n in range(20)]  # 20 positions: three epochs
    assert [a[n] for n in (19, 0, 8)] == [b[n] for n in (19, 0, 8)]  # an epoch dropped from memory is remade
    assert not np.array_equal(a.epoch(0), a.epoch(1))  # each epoch its own order
    with pytest.raises(MarlinError, match="shards for 9 processes"):
        RankOrder(counts, 0, 0, 9, 3)
    # the shuffle buffer emits every element once and mixes only within its reach
    order = buffer_shuffle(np.arange(100), 10, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(100)) and order[0] < 10 and not np.array_equal(order, np.arange(100))


def test_stream_is_the_same_for_any_number_of_workers_and_resumes_exactly(data, tmp_path):
    write_shards(data, tmp_path / "sh", "10KB", img_size=32, patch_size=8, progress=False)
    ds = shard_dataset(tmp_path / "sh", **CLIPS)

    def batches(start, workers, n):
        loader = DataLoader(ShardStream(ds, 2, rank=1, world=2, start=start, buffer=3), batch_size=None,
                            num_workers=workers)
        out = []
        for b in loader:
            out.append(b)
            if len(out) == n:
                return out

    full = batches(0, 0, 6)
    assert [b["position"].tolist() for b in full[:2]] == [[2, 3], [6, 7]]  # rank 1 of 2, batch 2: k*4 + 2 + j
    for b, c in zip(full[3:], batches(3, 2, 3)):  # resumed after 3 batches, read by two workers
        assert torch.equal(b["video"], c["video"]) and torch.equal(b["mask"], c["mask"])
        assert torch.equal(b["position"], c["position"])


def test_stale_or_mismatched_shards_are_refused(data, tmp_path, capsys):
    out = tmp_path / "sh"
    assert main(["shard", str(data), str(out), "--shard-size", "10KB", "--img-size", "32", "--patch-size", "8",
                 "--quiet"]) == 0
    assert (out / "shard_config.yaml").is_file()
    capsys.readouterr()
    # other options into the same OUT
    assert main(["shard", str(data), str(out), "--shard-size", "10KB", "--img-size", "32", "--patch-size", "4",
                 "--quiet"]) == 2
    assert "config.patch_size: 8 recorded, 4 now" in capsys.readouterr().err
    # shards of another geometry than the model
    with pytest.raises(MarlinError, match="patch_size: 8 in the shards, 16 in the config"):
        shard_dataset(out, **{**CLIPS, "geometry": MarlinConfig(img_size=32, patch_size=16, n_frames=8)})
    # a shard changed after it was recorded
    record = json.loads((out / "shards.json").read_text())
    victim = out / record["shards"][1]["name"]
    victim.write_bytes(victim.read_bytes()[:-512])
    with pytest.raises(MarlinError, match="cut short"):
        open_shards(out)
    # brace patterns name a subset; an unknown shard is refused
    assert expand_braces("s-{000..002}.tar") == ["s-000.tar", "s-001.tar", "s-002.tar"]
    assert len(open_shards(str(out / "shard-{000000..000000}.tar")).shards) == 1
    with pytest.raises(MarlinError, match="does not list"):
        open_shards(str(out / "shard-{000000..000099}.tar"))


def test_pretrain_reads_shards_and_resumes_exactly(data, tmp_path):
    import copy

    from marlin.train import pretrain
    from marlin.train.history import read_history

    write_shards(data, tmp_path / "sh", "10KB", img_size=32, patch_size=8, progress=False)
    kw = dict(progress=False, accelerator="cpu", tensorboard=False, mask_picture=False, log_every=1,
              shuffle_buffer=3, schedule_steps=4)
    full = pretrain(copy.deepcopy(TINY_PRETRAIN), tmp_path / "sh", tmp_path / "full", max_steps=4, **kw)
    first = pretrain(copy.deepcopy(TINY_PRETRAIN), tmp_path / "sh", tmp_path / "split", max_steps=2, **kw)
    resumed = pretrain(copy.deepcopy(TINY_PRETRAIN), tmp_path / "sh", tmp_path / "split", max_steps=4,
                       resume=first.checkpoint, **kw)
    a = {r["iteration"]: r for r in full.history if r["kind"] == "train"}
    b = {r["iteration"]: r for r in read_history(resumed.history_csv) if r["kind"] == "train"}
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    for it in (3, 4):
        for k in ("rec_loss", "d_loss", "lr"):
            assert abs(a[it][k] - b[it][k]) <= 1e-6 * max(1.0, abs(a[it][k])), (it, k)
    assert a[4]["rec_loss"] != a[1]["rec_loss"]


def test_jpg_shards_hold_every_frame_as_jpeg(data, tmp_path):
    write_shards(data, tmp_path / "sh", "1MB", img_size=32, patch_size=8, video="jpg", progress=False)
    ds = shard_dataset(tmp_path / "sh", **CLIPS)
    ref = {it.root.relative_to(data).as_posix(): it for it in open_items(data)}
    for i in range(len(ds.items)):
        item = ds.items[i]
        assert "mp4" not in item.members and f"f{item.num_frames - 1:06d}.jpg" in item.members
        a, b = item.read_frames([0, 5, 99]), ref[item.name].read_frames([0, 5, 99])
        assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() < 3  # JPEG quality 95


def test_shard_size_needs_a_unit():
    """`--shard-size 1` (meant as 1 GB) would write one shard per sample: a unit is required."""
    from marlin.data.shards import parse_size

    assert parse_size("1GB") == 10 ** 9 and parse_size("512MiB") == 2 ** 29 and parse_size("2e9B") == 2 * 10 ** 9
    assert parse_size(4096) == 4096  # the Python API's bytes
    for bad in ("1", "2e9", "1 GX", "0GB"):
        with pytest.raises(MarlinError, match="shard size"):
            parse_size(bad)


def test_shards_of_items_without_parse_maps_are_not_reused_once_the_maps_exist(tmp_path):
    """Parse maps added to the same items later (meta unchanged): the old shards hold no Fasking part maps, so
    writing into their folder again is refused instead of returning them as finished."""
    import shutil

    data = make_items(tmp_path / "data", n=2, t=16, parse=False)
    write_shards(data, tmp_path / "sh", "1MB", img_size=32, patch_size=8, progress=False)
    with_parse = make_items(tmp_path / "parsed", n=2, t=16, parse=True)
    for name in ("v0", "v1"):
        shutil.copy(with_parse / name / "parse.npz", data / name / "parse.npz")
    with pytest.raises(MarlinError, match="source.digest"):
        write_shards(data, tmp_path / "sh", "1MB", img_size=32, patch_size=8, progress=False)
