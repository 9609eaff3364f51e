"""WebDataset-format tar shards of preprocessed face items, and the pretraining stream that reads them.

``OUT/shard-000000.tar, ...`` plain (uncompressed) POSIX tars in the WebDataset convention: a sample is the run
of consecutive members sharing a key (the name before the first dot), here a 9-digit sample number::

    KEY.json        the item's meta.json plus {"path": item path relative to the source dataset}
    KEY.mp4         the clip as preprocess stored it (H.264 bytes)          } "copy" (default), or
    KEY.fNNNNNN.jpg one member per frame for JPEG-frame items (YTF layout)  }
    KEY.fNNNNNN.jpg every frame decoded and stored as JPEG (quality 95)     } "jpg"
    KEY.frames.npy  uint8 (T, S, S, 3) decoded frames                       } "raw"
    KEY.parse.npz   the item's parse maps as stored (absent without)
    KEY.parts.npy   uint8 (T, S/p, S/p): the Fasking groups of every frame's patches as bits, at the recorded
                    img_size / patch_size (what `PretrainClips.part_bits` computes; absent without parse maps)

``OUT/shards.json`` is the record: format, source (dataset path, item count, digest of names and meta), config
(video, img_size, patch_size, shard_size, order seed) and per shard its name, first sample, samples and bytes.
It is checked on reuse: `marlin shard` into an OUT made from other data or options, pretraining with another
img_size / patch_size, or a shard file whose size is not the recorded one, are refused with the difference named.

The reader is our own (tarfile headers + seeks), not the `webdataset` package, because pretraining needs exact
resume: the order of the samples a rank sees is a pure function of (seed, epoch, rank, world, shuffle buffer,
shard sample counts), so a restarted run reads the same samples in the same order (see docs/scale.md).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tarfile
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from ..atomic import atomic_path, write_json
from ..config import flatten, setting
from ..errors import MarlinError
from ..masking import MaskSpec, MaskStrategy
from ..models.config import MarlinConfig
from .clips import PretrainClips, collate, open_items

log = logging.getLogger(__name__)

FORMAT = "marlin-shards/1"
RECORD = "shards.json"
VIDEO_MODES = ("copy", "jpg", "raw")
_UNITS = {"": 1, "B": 1, "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12, "KIB": 2 ** 10,
          "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}


def parse_size(text) -> int:
    """"1GB" (10^9), "512MiB" (2^29), "2e9B" -> bytes. The unit is required: a bare "1" (meant as 1 GB) would
    otherwise give one shard per sample. An int (the Python API) is a number of bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = f"{text}B"
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([KMGT]?i?B?)\s*", str(text), re.IGNORECASE)
    if not m or m.group(2).upper() not in _UNITS or not m.group(2):
        raise MarlinError(f"shard size {text!r}: expected a number with a unit (e.g. 1GB, 500MiB, 2e9B)")
    size = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if size <= 0:
        raise MarlinError(f"shard size {text!r}: must be positive")
    return size


def expand_braces(pattern: str) -> list[str]:
    """Bash-style brace expansion as WebDataset URLs use it: "s-{000..003}.tar", "{a,b}.tar"."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    body, head, tail = m.group(1), pattern[:m.start()], pattern[m.end():]
    r = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if r:
        lo, hi, width = int(r.group(1)), int(r.group(2)), len(r.group(1))
        options = [f"{i:0{width}d}" for i in range(lo, hi + 1)]
    else:
        options = body.split(",")
    return [x for o in options for x in expand_braces(head + o + tail)]


@dataclass
class ShardSettings:
    """`marlin shard` options (flags, `--set key=value`, `write_shards(..., **settings)`)."""

    shard_size: str = setting("target shard size, with a unit: 1GB (10^9 bytes), 500MB, 500MiB", default="1GB")
    img_size: int = setting("frame side the Fasking part maps are computed for (the pretraining img_size)",
                            default=224)
    patch_size: int = setting("patch side of the part maps (the pretraining patch_size)", default=16)
    video: str = setting("copy: the clip as stored (H.264 bytes or JPEG frames); jpg: every frame as JPEG "
                         "(~6x the H.264 bytes, ~5x faster to read); raw: decoded uint8 frames (~80x, no decoding)",
                         default="copy")
    seed: int = setting("seed of the item order across shards (shuffled once)", default=0)


# ---- writing ---------------------------------------------------------------------------------------------------
def _source_record(src, base: Path, items) -> dict:
    h = hashlib.sha256()
    for it in items:
        meta = getattr(it, "meta", {"num_frames": it.num_frames})
        # parse maps can appear later (a YTF parses/ folder): the shards would then lack the part maps
        h.update(f"{_relative(it, base)}\n{json.dumps(meta, sort_keys=True)}\n{it.has_parse()}\n".encode())
    return {"path": str(Path(src).resolve()), "items": len(items), "digest": h.hexdigest()[:16]}


def _differences(a: dict, b: dict) -> list[str]:
    """"key: X recorded, Y now" for every (dotted) key where record ``a`` and ``b`` differ."""
    fa, fb = flatten(a), flatten(b)
    return [f"{k}: {fa.get(k)!r} recorded, {fb.get(k)!r} now" for k in sorted(fa.keys() | fb.keys())
            if fa.get(k) != fb.get(k)]


def _relative(item, src: Path) -> str:
    """The item's path in its dataset (YTF: <person>/<n>; folders: relative to the dataset root)."""
    if hasattr(item, "path"):
        return item.path
    try:
        return item.root.resolve().relative_to(src).as_posix()
    except ValueError:
        return str(item.root)


def _members(item, index: int, clips: PretrainClips, video: str, src: Path) -> dict[str, bytes]:
    """ext -> bytes of one sample."""
    root = getattr(item, "root", None)
    meta = dict(getattr(item, "meta", {"num_frames": item.num_frames}))
    meta["path"] = _relative(item, src)
    out = {"json": json.dumps(meta).encode()}
    clip = getattr(item, "video_path", None)
    frames_dir = getattr(item, "frames_dir", None) or (root / "frames" if root is not None else None)
    if video == "raw":
        out["frames.npy"] = _npy(item.read_frames(np.arange(item.num_frames)))
    elif video == "jpg":  # decoded once, stored as JPEG (quality 95, as `write_item(as_jpg=True)`)
        import cv2

        for i, f in enumerate(item.read_frames(np.arange(item.num_frames))):
            _, buf = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            out[f"f{i:06d}.jpg"] = buf.tobytes()
    elif clip is not None and Path(clip).is_file():
        out["mp4"] = Path(clip).read_bytes()
    elif frames_dir is not None and Path(frames_dir).is_dir():
        files = sorted(Path(frames_dir).glob("*.jpg"))
        if not files:
            raise MarlinError(f"{frames_dir}: no .jpg frames (use --video raw for other frame files)")
        out.update({f"f{i:06d}.jpg": f.read_bytes() for i, f in enumerate(files)})
    else:
        raise MarlinError(f"{item.name}: no clip.mp4 or frames/*.jpg to copy (use --video raw)")
    parse = root / "parse.npz" if root is not None else None
    if parse is not None and parse.is_file():
        out["parse.npz"] = parse.read_bytes()
    elif item.has_parse():
        buf = io.BytesIO()
        np.savez_compressed(buf, parse=item.read_parse(None))
        out["parse.npz"] = buf.getvalue()
    if "parse.npz" in out:
        out["parts.npy"] = _npy(clips.part_bits(index))
        clips._bits.pop(index, None)  # computed once, kept only in the shard
    return out


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # fixed metadata: the same shards from the same data
    tar.addfile(info, io.BytesIO(data))


def write_shards(src, out, shard_size="1GB", img_size: int = 224, patch_size: int = 16, video: str = "copy",
                 seed: int = 0, progress: bool = True) -> dict:
    """Write the items of ``src`` (a `marlin preprocess` / `marlin synth` output, a .txt item list or a YouTube
    Faces root) as WebDataset tar shards of about ``shard_size`` into ``out``; returns the record.

    Items are written in an order shuffled once by ``seed`` (a shard mixes people and sources). A finished
    OUT with the same record is left as it is; an interrupted one continues after its last whole shard."""
    from tqdm import tqdm

    if video not in VIDEO_MODES:
        raise MarlinError(f"--video {video!r}: choose from {', '.join(VIDEO_MODES)}")
    geometry = MarlinConfig(img_size=int(img_size), patch_size=int(patch_size))  # checks the geometry
    items = open_items(src)
    base = (Path(src).parent if Path(src).is_file() else Path(src)).resolve()
    config = {"video": video, "img_size": int(img_size), "patch_size": int(patch_size),
              "shard_size": parse_size(shard_size), "order_seed": int(seed)}
    record = {"format": FORMAT, "source": _source_record(src, base, items), "config": config, "shards": [],
              "samples": 0, "complete": False}
    out = Path(out)
    if (out / RECORD).is_file():
        old = read_record(out)
        diff = _differences({"source": old["source"], "config": old["config"]},
                            {"source": record["source"], "config": config})
        if diff:
            raise MarlinError(f"{out}: holds shards of other data or options ({'; '.join(diff)}): "
                              f"write to a new folder or delete this one")
        if old.get("complete"):
            return old
        record = old
    out.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng([seed, 5]).permutation(len(items))
    clips = PretrainClips([items[i] for i in order], geometry, MaskSpec(MaskStrategy.RANDOM))
    k = sum(s["samples"] for s in record["shards"])
    limit, pending = config["shard_size"], None
    with tqdm(total=len(items), initial=k, desc="shard", unit="item", disable=not progress) as bar:
        while k < len(items):
            name, first = f"shard-{len(record['shards']):06d}.tar", k
            with atomic_path(out / name) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
                size = 1024  # the end-of-archive blocks
                while k < len(items):
                    members, pending = pending or _members(clips.items[k], k, clips, video, base), None
                    need = sum(512 + -(-len(b) // 512) * 512 for b in members.values())
                    if k > first and size + need > limit:
                        pending = members  # starts the next shard
                        break
                    for ext, data in members.items():
                        _add(tar, f"{k:09d}.{ext}", data)
                    size, k = size + need, k + 1
                    bar.update(1)
            _finish(out, record, first, k, name)
    record["complete"] = True
    write_json(out / RECORD, record)
    return record


def _finish(out: Path, record: dict, first: int, end: int, name: str) -> None:
    """Record a finished shard (and write the record, so an interrupted run continues after it)."""
    record["shards"].append({"name": name, "first": first, "samples": end - first,
                             "bytes": (out / name).stat().st_size})
    record["samples"] = end
    write_json(out / RECORD, record)


# ---- reading ---------------------------------------------------------------------------------------------------
def read_record(folder) -> dict:
    path = Path(folder) / RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise MarlinError(f"{path}: unreadable shard record ({e})") from None
    if record.get("format") != FORMAT:
        raise MarlinError(f"{path}: not a {FORMAT} record (format {record.get('format')!r})")
    return record


def is_shards(spec) -> bool:
    """True for a shard folder (with shards.json), a .tar file or a brace pattern of them."""
    s = str(spec)
    return (Path(s).is_dir() and (Path(s) / RECORD).is_file()) or s.endswith(".tar") or ("{" in s and ".tar" in s)


@dataclass
class ShardSet:
    """The shards a run reads: the record, their files and sample counts (in the record's order)."""

    root: Path
    record: dict
    shards: list  # record entries of the shards in use

    @property
    def counts(self) -> list[int]:
        return [s["samples"] for s in self.shards]

    @property
    def total(self) -> int:
        return sum(self.counts)

    def check(self, img_size: int, patch_size: int) -> ShardSet:
        """Refuse shards whose Fasking part maps were computed for another geometry."""
        c = self.record["config"]
        diff = [f"{k}: {c[k]} in the shards, {v} in the config" for k, v in
                (("img_size", img_size), ("patch_size", patch_size)) if c[k] != v]
        if diff:
            raise MarlinError(f"{self.root / RECORD}: made for another model geometry ({'; '.join(diff)}): "
                              f"`marlin shard` again with --img-size {img_size} --patch-size {patch_size}")
        return self


def open_shards(spec) -> ShardSet:
    """A shard folder, one .tar, or a brace pattern ("out/shard-{000000..000099}.tar"), checked against the
    folder's record: listed in it, present, and of the recorded size."""
    s = str(spec)
    if Path(s).is_dir():
        root, names = Path(s), None
    else:
        paths = [Path(p) for p in expand_braces(s)]
        root, names = paths[0].parent, [p.name for p in paths]
        if any(p.parent != root for p in paths):
            raise MarlinError(f"{spec}: all shards must lie in one folder (with its {RECORD})")
    record = read_record(root)
    if not record.get("complete"):
        raise MarlinError(f"{root}: sharding did not finish (run `marlin shard` again to complete it)")
    by_name = {e["name"]: e for e in record["shards"]}
    unknown = [n for n in (names or []) if n not in by_name]
    if unknown:
        raise MarlinError(f"{root / RECORD}: does not list {', '.join(unknown[:3])}")
    shards = [by_name[n] for n in names] if names else list(record["shards"])
    for e in shards:
        f = root / e["name"]
        if not f.is_file():
            raise MarlinError(f"{f}: shard listed in {RECORD} is missing")
        if f.stat().st_size != e["bytes"]:
            raise MarlinError(f"{f}: {f.stat().st_size} bytes, {e['bytes']} recorded in {RECORD}: the shard was "
                              f"changed or cut short (write the shards again)")
    if not shards:
        raise MarlinError(f"{spec}: no shards")
    return ShardSet(root, record, shards)


class _Named(io.BytesIO):
    """In-memory member whose name appears in error messages."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return self.name


class ShardItem:
    """One sample of a shard, read like a `marlin.data.layout.FaceItem` (num_frames, read_frames, read_parse)."""

    def __init__(self, members, where: str, raw: tuple | None = None):
        self.members, self.where = members, where  # ext -> bytes (a dict, or `_Members` reading on access)
        self.raw = raw  # (shard path, offset, size) of a frames.npy member, read frame by frame
        self.meta = json.loads(members["json"])
        self.root = Path(f"{where} ({self.name})")  # for messages: shard, sample and item path

    @property
    def name(self) -> str:
        return self.meta.get("path", "?")

    @property
    def num_frames(self) -> int:
        return int(self.meta["num_frames"])

    def video_source(self):
        """The H.264 clip as an in-memory file (decoded like a `clip.mp4`), or None."""
        data = self.members.get("mp4")
        return None if data is None else _Named(data, f"{self.where}.mp4")

    def read_frames(self, indices=None) -> np.ndarray:
        n = self.num_frames
        idx = np.arange(n) if indices is None else np.minimum(np.asarray(indices, int), n - 1)
        if self.raw is not None:
            return _npy_rows(*self.raw, idx)
        if "mp4" in self.members:
            from ..video import read_frames

            return read_frames(self.video_source(), list(idx))
        import cv2

        out = []
        for i in idx:
            img = cv2.imdecode(np.frombuffer(self.members[f"f{int(i):06d}.jpg"], np.uint8), cv2.IMREAD_COLOR)
            out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        return np.stack(out)

    def has_parse(self) -> bool:
        return "parse.npz" in self.members

    def read_parse(self, indices=None) -> np.ndarray | None:
        if not self.has_parse():
            return None
        with np.load(io.BytesIO(self.members["parse.npz"])) as z:
            parse = z["parse"]
        return parse if indices is None else parse[[min(int(i), len(parse) - 1) for i in indices]]

    @property
    def part_bits(self) -> np.ndarray | None:
        data = self.members.get("parts.npy")
        return None if data is None else np.load(io.BytesIO(data))


class _Members(dict):
    """A sample's members, each read from the open shard when first asked for (a clip of 16 frames reads 16 of
    an item's JPEG members, not all of them)."""

    def __init__(self, file, where: dict[str, tuple[int, int]]):
        super().__init__()
        self.file, self.where = file, where  # the reader's shared handle (reopened if it was closed since)

    def __contains__(self, ext) -> bool:
        return ext in self.where

    def get(self, ext, default=None):
        return self[ext] if ext in self.where else default

    def __missing__(self, ext):
        offset, size = self.where[ext]  # KeyError for a member the sample does not have
        if self.file.closed:
            self.file = open(self.file.name, "rb")
        self.file.seek(offset)
        data = self[ext] = self.file.read(size)
        return data


def _npy_rows(path: Path, offset: int, size: int, rows) -> np.ndarray:
    """Rows ``rows`` of the .npy array stored at ``offset`` in ``path``, reading only those rows."""
    with open(path, "rb") as f:
        f.seek(offset)
        fmt = np.lib.format
        read_header = fmt.read_array_header_1_0 if fmt.read_magic(f)[0] == 1 else fmt.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        start = f.tell()
    if fortran or start - offset + int(np.prod(shape)) * dtype.itemsize != size:
        raise MarlinError(f"{path}: frames.npy member at byte {offset} is not a C-ordered array of its size")
    array = np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape)
    return np.ascontiguousarray(array[np.asarray(rows)])


def _scan(path: Path) -> list[dict[str, tuple[int, int]]]:
    """Members of a WebDataset tar grouped into samples: [{ext: (data offset, size)}] in tar order."""
    samples, key = [], None
    with tarfile.open(path, "r:") as tar:
        for m in tar:
            if not m.isfile():
                continue
            base = m.name.rsplit("/", 1)[-1]
            k, _, ext = base.partition(".")
            if k != key:
                samples.append({})
                key = k
            samples[-1][ext] = (m.offset_data, m.size)
    return samples


class ShardSamples:
    """Random access to every sample of a ShardSet (index 0 .. total-1 in shard order) -> ShardItem.

    Each shard's member offsets are read from its tar headers on first use; files stay open (a few at a time)."""

    def __init__(self, shards: ShardSet, keep: int = 4):
        self.shards = shards
        self.starts = np.cumsum([0] + shards.counts).tolist()
        self._index: dict[int, list] = {}
        self._files: dict[int, object] = {}
        self._recent: dict[int, ShardItem] = {}
        self._keep = keep

    def __getstate__(self):  # worker processes open their own files
        return {**self.__dict__, "_files": {}, "_recent": {}}

    def __len__(self) -> int:
        return self.shards.total

    def locate(self, i: int) -> tuple[int, int]:
        s = bisect_right(self.starts, i) - 1
        return s, i - self.starts[s]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(i)
        if i in self._recent:
            return self._recent[i]
        s, j = self.locate(i)
        path = self.shards.root / self.shards.shards[s]["name"]
        if s not in self._index:
            self._index[s] = _scan(path)
            if len(self._index[s]) != self.shards.counts[s]:
                raise MarlinError(f"{path}: {len(self._index[s])} samples, {self.shards.counts[s]} recorded in "
                                  f"{RECORD}")
        f = self._files.get(s)
        if f is None:
            if len(self._files) >= 8:
                self._files.pop(next(iter(self._files))).close()
            f = self._files[s] = open(path, "rb")
        where = self._index[s][j]
        raw = (path, *where["frames.npy"]) if "frames.npy" in where else None  # only the clip's frames are read
        item = ShardItem(_Members(f, where), f"{path}:{j}", raw)
        if len(self._recent) >= self._keep:
            self._recent.pop(next(iter(self._recent)))
        self._recent[i] = item
        return item


class ShardClips(PretrainClips):
    """`PretrainClips` over shard samples: the same clip and mask for the same sample and position, with the
    Fasking part map read from the shard instead of computed from the parse maps (the shard's map is the official
    any-pixel membership; fasking_inner's is computed from the shard's parse maps)."""

    def part_bits(self, index: int) -> np.ndarray | None:
        item = self.items[index]
        bits = item.part_bits if self.mask.strategy.membership == "any" else None
        if bits is None and item.has_parse():
            return super().part_bits(index)
        if bits is None and index not in self._bits:
            self._parse(index)  # warns once for this sample
            self._bits[index] = None
        return bits


def buffer_shuffle(ids: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """The order in which a shuffle buffer of ``size`` emits the stream ``ids``: fill the buffer, then for every
    new element emit a random buffered one and put the new one in its place; drain in random order."""
    if size <= 1 or len(ids) <= 1:
        return np.asarray(ids)
    ids = list(map(int, ids))
    buf, out = ids[:size], []
    picks = rng.integers(0, len(buf), len(ids))
    for n, x in enumerate(ids[size:]):
        k = int(picks[n])
        out.append(buf[k])
        buf[k] = x
    rng.shuffle(buf)
    return np.asarray(out + buf)


class RankOrder:
    """The endless sample order of one rank: epoch e permutes the shards (seed, e), gives shards r, r+W, ... to
    rank r of W, streams them in that order through a shuffle buffer seeded by (seed, e, r). A pure function,
    so resuming at position n continues the same order."""

    def __init__(self, counts: list[int], seed: int, rank: int, world: int, buffer: int):
        if len(counts) < world:
            raise MarlinError(f"{len(counts)} shards for {world} processes: every process reads whole shards, "
                              f"so write at least {world} (a smaller --shard-size)")
        self.counts, self.seed, self.rank, self.world, self.buffer = counts, seed, rank, world, buffer
        self.starts = np.cumsum([0] + list(counts))
        self._ends: list[int] = []  # position after the last sample of each epoch of this rank
        self._orders: dict[int, np.ndarray] = {}  # the last two epochs' orders (long runs stay small)

    def _shards(self, e: int) -> np.ndarray:
        return np.random.default_rng([self.seed, e, 11]).permutation(len(self.counts))[self.rank::self.world]

    def epoch(self, e: int) -> np.ndarray:
        """Global sample indices of this rank's epoch ``e``, in order."""
        if e not in self._orders:
            if len(self._orders) >= 2:
                del self._orders[next(iter(self._orders))]  # the oldest
            stream = np.concatenate([np.arange(self.starts[s], self.starts[s + 1]) for s in self._shards(e)])
            self._orders[e] = buffer_shuffle(stream, self.buffer, np.random.default_rng([self.seed, e, self.rank, 13]))
        return self._orders[e]

    def __getitem__(self, n: int) -> int:
        while not self._ends or self._ends[-1] <= n:  # epoch lengths need only the shard permutation
            k = len(self._ends)
            self._ends.append((self._ends[-1] if k else 0) + int(sum(self.counts[s] for s in self._shards(k))))
        e = bisect_right(self._ends, n)
        return int(self.epoch(e)[n - (self._ends[e - 1] if e else 0)])


class ShardStream(IterableDataset):
    """Batches of rank ``rank`` of ``world``: batch k holds rank-order positions k*B .. k*B+B-1, sample j of it
    gets the global position k*B*W + r*B + j (seeding its clip start and mask, as `PositionSampler`). Data-loader
    worker w of n yields batches start+w, start+w+n, ... (the order the DataLoader takes them in), so the stream
    does not depend on the number of workers; ``start`` = batches already consumed (resume)."""

    def __init__(self, clips: ShardClips, batch_size: int, rank: int = 0, world: int = 1, start: int = 0,
                 limit: int | None = None, buffer: int = 1000):
        self.clips, self.batch_size, self.rank, self.world = clips, batch_size, rank, world
        self.start, self.limit = start, limit
        self.order = RankOrder(clips.items.shards.counts, clips.seed, rank, world, buffer)

    def batch(self, k: int) -> dict:
        b = self.batch_size
        out = []
        for j in range(b):
            index = self.order[k * b + j]
            out.append(self.clips.sample(index, k * b * self.world + self.rank * b + j))
        return collate(out)

    def __iter__(self):
        info = get_worker_info()
        w, n = (info.id, info.num_workers) if info is not None else (0, 1)
        k = self.start + w
        while self.limit is None or k < self.limit:
            yield self.batch(k)
            k += n


def open_samples(spec, img_size: int, patch_size: int) -> ShardSamples:
    """The samples of the shards ``spec`` (folder, .tar or brace pattern), checked against a model geometry."""
    return ShardSamples(open_shards(spec).check(img_size, patch_size))


def shard_dataset(spec, geometry: MarlinConfig, mask: MaskSpec, **clips_kwargs) -> ShardClips:
    """ShardClips over ``spec``, checked against the clips' geometry (``clips_kwargs``: `PretrainClips`'s)."""
    return ShardClips(open_samples(spec, geometry.img_size, geometry.patch_size), geometry, mask, **clips_kwargs)

