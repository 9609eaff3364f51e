"""What a full MARLIN checkpoint rebuilds from a masked clip (`marlin reconstruct`).

For one clip and one mask: the model's pixel predictions of the masked tubelets, the reconstruction loss as
pretraining defines it (`marlin.train.objective`), the same loss of a mean-patch baseline on the same masked
patches, and pictures: a PNG sheet with four rows (original; masked input; reconstruction with the visible
patches pasted back, as in the paper's figures; per-patch error heat map; one column per tubelet) and an mp4
with the same four views side by side.

Mean-patch baseline: every masked patch is predicted by the mean of the clip's visible patches (in the target
space of the objective: raw pixels, or per-patch normalised pixels for a checkpoint pretrained with
``norm_target``). A model that learnt anything beats it by far; a damaged or untrained one does not.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import MarlinError
from .masking import MaskSpec, MaskStrategy, make_masks, token_parts
from .models.patches import patchify, scatter_tokens, unpatchify
from .train.objective import denormalize_predictions, masked_pixel_weights, masked_targets, reconstruction_loss

FORMAT = "marlin-reconstruct/1"
RECORD = "reconstruct.json"  # per input: OUT/<name>/reconstruct.json
RUN_RECORD = "reconstruct_run.json"  # per output folder: the settings every input of it was made with
PARSE_STRATEGIES = tuple(s for s in MaskStrategy if s.needs_parts)  # the strategies that need parse maps
SHEET_ROWS = ("original", "masked input", "reconstruction (visible patches pasted back)", "per-patch error")
MASK_FILL = 128  # grey of the hidden patches in the masked-input row
FULL_FILES = ("an official *.full.pt, a Lightning *.ckpt, a full .safetensors (Marlin.save of a model with its "
              "decoder) or a Hugging Face folder with a decoder")
BASELINE = ("mean-patch baseline: every masked patch predicted by the mean of the clip's visible patches "
            "(in the objective's target space), scored by the same loss")

# the 'inferno' colour map at five stops (0 = black: no error ... 1 = pale yellow: >= the heat map's scale)
_HEAT_STOPS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float64)


# ---- the model ----------------------------------------------------------------------------------------------
def load_full_model(checkpoint, model: str | os.PathLike | None = None):
    """(Marlin with its decoder, checkpoint record) of a file or Hugging Face folder that carries the decoder.

    ``model``: preset name or official-layout YAML (default: the config a .safetensors file or folder carries,
    else marlin_vit_base_ytf). An encoder-only checkpoint raises CheckpointError naming the files that work.
    The record holds the path, the SHA-256 of the file (of the state dict for a folder) and the architecture."""
    from .checkpoints import CheckpointError, file_sha256
    from .models import Marlin
    from .models.config import model_record

    path = Path(checkpoint)
    if path.is_dir():
        net = Marlin.from_pretrained(path, full=None)
        if model is not None:
            raise MarlinError(f"--model {model}: a Hugging Face folder carries its own config ({path}/config.json); "
                              f"leave --model out")
        sha = {"weights_sha256": model_record(net)["weights_sha256"]}
    elif path.is_file():
        name = model if model is not None else (None if path.suffix == ".safetensors" else "marlin_vit_base_ytf")
        net = Marlin.from_file(name, path, full_model=None)
        sha = {"sha256": file_sha256(path)}
    else:
        raise CheckpointError(f"{path}: checkpoint does not exist")
    if net.decoder is None:
        raise CheckpointError(f"{path}: holds the encoder only (no decoder.* weights); reconstruction needs the "
                              f"decoder, which {FULL_FILES} carries")
    record = {"path": str(path), **sha, "model": None if model is None else str(model),
              "config": net.config.to_dict()}
    return net.eval(), record


def pretraining_objective(model) -> dict:
    """The reconstruction term the model was pretrained with: per-patch normalised targets or raw pixels, and
    the weight of facial-feature pixels; from the pretraining record a toolkit checkpoint carries, else the
    official objective (raw pixels, plain mean squared error)."""
    run = (getattr(model, "training_record", None) or {}).get("config") or {}
    trainer = run.get("trainer") or {}
    if not trainer:
        return {"norm_target": False, "part_weight": 1.0, "from": "official objective (no pretraining record)"}
    return {"norm_target": bool(trainer.get("norm_target", False)),
            "part_weight": float(trainer.get("part_weight", 1.0)), "from": "the checkpoint's pretraining record"}


# ---- one clip --------------------------------------------------------------------------------------------------
def clip_mask(strategy: str, grid: tuple[int, int, int], ratio: float = 0.9, seed: int = 0,
              parse: np.ndarray | None = None, patch_size: int = 16, tubelet_size: int = 2) -> Tensor:
    """(N,) bool mask, True = visible, of one clip as pretraining draws it (`marlin.masking.make_masks`, one
    generator seeded ``seed``); ``parse`` (T, S, S) LaPa maps of the clip's frames, needed by fasking."""
    spec = MaskSpec(strategy, ratio)  # checks both
    parts = None
    if spec.strategy.needs_parts:
        if parse is None:
            raise ValueError(f"mask {strategy!r} needs the clip's parse maps (facial parts are masked first)")
        parts = [token_parts(parse[::tubelet_size][:grid[0]], patch_size, spec.strategy.membership)]
    return make_masks(spec, 1, grid, parts, torch.Generator().manual_seed(int(seed)))[0]


def _as_video(clip) -> Tensor:
    """(3, T, H, W) float32 in [0, 1] of a decoded clip (T, H, W, 3) uint8 or of such a tensor."""
    if isinstance(clip, Tensor) and clip.is_floating_point():
        return clip.detach().float().cpu()
    from .extract import clips_to_tensor

    return clips_to_tensor(np.asarray(clip)[None])[0]


@dataclass
class Reconstruction:
    """One clip's reconstruction. Patches are per tubelet, channel-major (`marlin.models.patches`)."""

    x: Tensor  # (3, T, H, W) float in [0, 1]
    mask: Tensor  # (N,) bool, True = visible
    pred: Tensor  # (Nm, K) the model's predictions of the masked patches, ascending token order (target space)
    target: Tensor  # (Nm, K) the objective's targets of the same patches
    loss: float  # the pretraining reconstruction loss of pred
    baseline_loss: float  # the same loss of the mean-patch baseline
    patch_error: Tensor  # (Nm,) mean squared error of each masked patch
    baseline_patch_error: Tensor  # (Nm,) the same for the baseline
    grid: tuple[int, int, int]
    patch_size: int
    tubelet_size: int
    norm_target: bool = False

    def views(self) -> np.ndarray:
        """(4, T, H, W, 3) uint8: the sheet's rows for every frame (see SHEET_ROWS)."""
        p, t = self.patch_size, self.tubelet_size
        x = self.x[None]
        mask = self.mask[None]
        patches = patchify(x, p, t)  # (1, N, K) raw pixels
        masked = patches.clone()
        masked[~mask] = MASK_FILL / 255
        shown = self.pred[None]
        if self.norm_target:  # back to pixels with the true patch statistics, as pretraining's pictures do
            shown = denormalize_predictions(shown, x, mask, p, t)
        recon = scatter_tokens(patches[mask][None], shown, mask)
        rows = [unpatchify(v, self.grid, p, t)[0] for v in (patches, masked, recon)]  # (3, T, H, W)
        rows = [(v.clamp(0, 1).permute(1, 2, 3, 0).numpy() * 255).round().astype(np.uint8) for v in rows]
        return np.stack(rows + [self._heat(rows[0])])

    def heat_scale(self) -> float:
        """Error that saturates the heat map: twice the baseline's mean per-patch error on this clip."""
        return 2 * float(self.baseline_patch_error.mean())

    def _per_pixel(self, values: Tensor) -> np.ndarray:
        """(N,) per-token values -> (T, H, W): each pixel holds its tubelet's value."""
        k = 3 * self.tubelet_size * self.patch_size ** 2
        return unpatchify(values.float()[None, :, None].expand(1, -1, k).contiguous(), self.grid, self.patch_size,
                          self.tubelet_size)[0, 0].numpy()

    def _heat(self, original: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8: masked patches coloured by their error (inferno, 0 .. heat_scale), visible
        patches the original in grey (they are not predicted)."""
        level = torch.zeros(self.mask.shape)
        level[~self.mask] = (self.patch_error / max(self.heat_scale(), 1e-12)).clamp(0, 1)
        level = self._per_pixel(level)
        stops = np.linspace(0, 1, len(_HEAT_STOPS))
        colour = np.stack([np.interp(level, stops, _HEAT_STOPS[:, c]) for c in range(3)], -1)
        visible = self._per_pixel(self.mask).astype(bool)
        grey = original.astype(np.float64).mean(-1, keepdims=True).repeat(3, -1)
        return np.where(visible[..., None], grey, colour).round().astype(np.uint8)


@torch.no_grad()
def reconstruct_clip(model, clip, mask: Tensor, parse: np.ndarray | None = None, objective: dict | None = None
                     ) -> Reconstruction:
    """Reconstruct one clip under ``mask`` ((N,) bool, True = visible) with a full model.

    ``clip``: (T, H, W, 3) uint8 as decoded, or (3, T, H, W) float in [0, 1]. ``objective``: the pretraining
    objective (default `pretraining_objective(model)`); a part weight != 1 weighs the facial-feature pixels of
    ``parse`` (T, H, W) as pretraining does, and applies only when parse maps are given."""
    from .masking import feature_pixels

    cfg = model.config
    p, t = cfg.patch_size, cfg.tubelet_size
    objective = objective or pretraining_objective(model)
    x = _as_video(clip)
    if tuple(x.shape[1:]) != (cfg.n_frames, cfg.img_size, cfg.img_size):
        raise ValueError(f"clip of {x.shape[1]} frames of {x.shape[3]}x{x.shape[2]}; the model takes "
                         f"{cfg.n_frames} frames of {cfg.img_size}x{cfg.img_size}")
    grid = cfg.grid
    mask = mask.reshape(-1).bool().cpu()
    if mask.numel() != grid[0] * grid[1] * grid[2] or not mask.any() or mask.all():
        raise ValueError(f"a mask needs {grid[0] * grid[1] * grid[2]} tokens with some visible and some masked, "
                         f"got {mask.numel()} with {int(mask.sum())} visible")
    model.eval()
    xb, mb = x[None], mask[None]
    pred = model(xb.to(model.device), mb.to(model.device)).float().cpu()  # (1, Nm, K)
    target = masked_targets(xb, mb, p, t, objective["norm_target"])
    weight = None
    if objective["part_weight"] != 1.0 and parse is not None:
        features = torch.from_numpy(feature_pixels(np.asarray(parse)))[None]
        weight = masked_pixel_weights(features, mb, p, t, objective["part_weight"])
    visible = masked_targets(xb, ~mb, p, t, objective["norm_target"])  # the visible patches, same target space
    baseline = visible.mean(1, keepdim=True).expand_as(target)
    return Reconstruction(
        x=x, mask=mask, pred=pred[0], target=target[0],
        loss=float(reconstruction_loss(pred, target, weight)),
        baseline_loss=float(reconstruction_loss(baseline, target, weight)),
        patch_error=(pred - target)[0].square().mean(-1),
        baseline_patch_error=(baseline - target)[0].square().mean(-1),
        grid=grid, patch_size=p, tubelet_size=t, norm_target=objective["norm_target"])


# ---- pictures ---------------------------------------------------------------------------------------------------
SEPARATOR = 2  # white pixels between tiles


def _scale(size: int) -> int:
    """Nearest-neighbour enlargement of small clips so their patches stay visible (as pretraining's sheets)."""
    return max(1, 160 // size)


def _enlarge(img: np.ndarray, k: int) -> np.ndarray:
    return img.repeat(k, -3).repeat(k, -2) if k > 1 else img


def sheet(views: np.ndarray, tubelet_size: int = 2) -> np.ndarray:
    """(H', W', 3) uint8 sheet: one row per view of `Reconstruction.views` (4, T, H, W, 3), one column per
    tubelet (its first frame), tiles separated by white lines of SEPARATOR pixels."""
    tiles = _enlarge(views[:, ::tubelet_size], _scale(views.shape[2]))  # (4, T', h, w, 3)
    r, c, h, w, _ = tiles.shape
    out = np.full((r * h + (r - 1) * SEPARATOR, c * w + (c - 1) * SEPARATOR, 3), 255, np.uint8)
    for i in range(r):
        for j in range(c):
            out[i * (h + SEPARATOR):i * (h + SEPARATOR) + h, j * (w + SEPARATOR):j * (w + SEPARATOR) + w] = tiles[i, j]
    return out


def movie_frames(views: np.ndarray) -> np.ndarray:
    """(T, h, 4w + 3 SEPARATOR, 3) uint8: the four views of every frame side by side."""
    tiles = _enlarge(views, _scale(views.shape[2]))  # (4, T, h, w, 3)
    gap = np.full((*tiles.shape[1:3], SEPARATOR, 3), 255, np.uint8)
    parts = [tiles[0]]
    for view in tiles[1:]:
        parts += [gap, view]
    return np.concatenate(parts, 2)


# ---- one input --------------------------------------------------------------------------------------------------
@dataclass
class Source:
    """Where one input's frames and parse maps come from: a preprocessed item, a face-crop video, or a raw
    video run through the face pipeline."""

    path: Path
    kind: str  # "item", "video" or "face pipeline"
    total: int
    fps: float
    read: object  # indices -> (L, S, S, 3) uint8
    read_parse: object  # indices -> (L, S, S) uint8, or None when there are no parse maps

    def has_parse(self) -> bool:
        return self.read_parse is not None

    def clips(self, windows: list[list[int]]):
        """The clips (L, S, S, 3) uint8 of ``windows``; a video is decoded once, as a stream."""
        if self.kind != "video":
            return (self.read(w) for w in windows)
        from .video import iter_frames
        from .video.windows import iter_clips

        return iter_clips(iter_frames(self.path), windows)


def item_of(path):
    """The preprocessed item ``path`` is (its folder, or its clip.mp4), or None."""
    from .data.layout import CLIP, is_item, load_item

    path = Path(path)
    if path.is_dir() and is_item(path):
        return load_item(path)
    return load_item(path.parent) if path.name == CLIP and is_item(path.parent) else None


def open_source(video, crop_face: bool = False, size: int = 224, pipeline=None) -> Source:
    """The frames of one input. An item (its folder or clip.mp4) is read with its parse.npz (``crop_face`` does
    not apply: it is cropped already); a video is read as face crops, or with ``crop_face`` run through
    ``pipeline`` (a `marlin.face.FacePipeline` with a parser; one is built when None) for crops and parse maps."""
    from .video import count_frames, probe, read_frames

    video = Path(video)
    item = item_of(video)
    if item is not None:
        return Source(video, "item", item.num_frames, item.fps, item.read_frames,
                      item.read_parse if item.has_parse() else None)
    if crop_face:
        if pipeline is None:
            from .face import FacePipeline

            pipeline = FacePipeline(size=size, parser="landmarks")
        face = pipeline.run(video)
        parse = None if face.parse is None else (lambda idx: face.parse[list(idx)])
        return Source(video, "face pipeline", len(face.frames), face.fps, lambda idx: face.frames[list(idx)], parse)
    return Source(video, "video", count_frames(video), probe(video).fps or 25.0,
                  lambda idx: read_frames(video, idx), None)


def _checked(source: Source, frames: np.ndarray | None, indices: list[int], size: int) -> np.ndarray:
    """A clip of ``indices`` as read (None: the stream ended first), checked against the model's input size."""
    from .video import VideoError

    if frames is None or len(frames) < len(indices):
        raise VideoError(source.path, f"the stream ends before frame {max(indices)} of the {source.total} frames "
                                      f"its container declares: the file is truncated or corrupt")
    if frames.shape[1:3] != (size, size):
        raise VideoError(source.path, f"frames are {frames.shape[2]}x{frames.shape[1]} but the model expects "
                                      f"{size}x{size} face crops: use --crop-face (crop_face=True) or `marlin "
                                      f"preprocess` first")
    return frames


def run_record(checkpoint: dict, strategy: str, ratio: float, seed: int, clips: int, sample_rate: int,
               stride: int, crop_face: bool, objective: dict) -> dict:
    """Everything that determines the outputs of a reconstruction run (OUT/reconstruct_run.json, compared on
    reuse of the folder): the weights by their hash (not their path), mask, windows, cropping, objective."""
    weights = {k: v for k, v in checkpoint.items() if k != "path"}
    return {"format": FORMAT, "checkpoint": weights,
            "mask": {"strategy": strategy, "ratio": float(ratio), "seed": int(seed)},
            "windows": {"sample_rate": int(sample_rate), "stride": int(stride), "clips": int(clips)},
            "crop_face": bool(crop_face), "objective": {k: v for k, v in objective.items() if k != "from"}}


def reconstruct_video(model, video, out_dir, strategy: str = "fasking", ratio: float = 0.9, seed: int = 0,
                      clips: int = 1, sample_rate: int = 2, stride: int = 16, crop_face: bool = False,
                      checkpoint: dict | None = None, pipeline=None, fps: float | None = None) -> dict:
    """Reconstruct the first ``clips`` official windows of one input (a preprocessed item, a face-crop
    video, or with ``crop_face`` any video) and write, into ``out_dir``, per clip k ``clipK.mp4`` (the four
    views side by side) and ``clipK.png`` (the sheet), then ``reconstruct.json`` (losses, baseline, windows,
    mask, checkpoint). Returns that record. Fasking needs parse maps: an item's parse.npz or ``crop_face``.
    ``checkpoint``: the record of `load_full_model`; ``pipeline``: a `marlin.face.FacePipeline` to reuse;
    ``fps``: the frame rate to assume for the input instead of its own (the mp4s play at fps / sample rate)."""
    from .atomic import write_json
    from .video.windows import clip_indices

    cfg = model.config
    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    source = open_source(video, crop_face, cfg.img_size, pipeline)
    if strategy in PARSE_STRATEGIES and not source.has_parse():
        raise MarlinError(parse_needed(source.path, strategy))
    objective = pretraining_objective(model)
    windows = clip_indices(source.total, cfg.n_frames, sample_rate, stride)[:clips]
    if not windows:
        raise MarlinError(f"{source.path}: no frames")
    out_dir = Path(out_dir)
    grid = cfg.grid
    entries, read = [], source.clips(windows)
    try:
        for k, indices in enumerate(windows):
            frames = _checked(source, next(read, None), indices, cfg.img_size)
            parse = source.read_parse(indices) if source.has_parse() else None
            mask = clip_mask(strategy, grid, ratio, seed, parse, cfg.patch_size, cfg.tubelet_size)
            rec = reconstruct_clip(model, frames, mask, parse, objective)
            step = max(1, indices[1] - indices[0]) if len(indices) > 1 else 1  # the sample rate of the window
            entries.append({"clip": k, "frames": [int(i) for i in indices],
                            **_write_clip(rec, out_dir, f"clip{k:03d}", (fps or source.fps) / step)})
    finally:
        read.close()  # a video's decoder, when a clip failed
    record = {"format": FORMAT, "input": str(source.path), "read_as": source.kind, "checkpoint": checkpoint,
              "mask": {"strategy": strategy, "ratio": float(ratio), "seed": int(seed),
                       "parse": None if strategy not in PARSE_STRATEGIES else
                       ("parse.npz" if source.kind == "item" else "face pipeline parser")},
              "windows": {"sample_rate": int(sample_rate), "stride": int(stride), "clips": len(windows)},
              "objective": objective, "baseline": BASELINE, "sheet_rows": list(SHEET_ROWS),
              "loss": float(np.mean([e["loss"] for e in entries])),
              "baseline_loss": float(np.mean([e["baseline_loss"] for e in entries])), "clips": entries}
    write_json(out_dir / RECORD, record)
    return record


def _write_clip(rec: Reconstruction, out_dir: Path, stem: str, fps: float) -> dict:
    """Write ``stem``.mp4 and ``stem``.png of one clip; returns its entry of reconstruct.json."""
    from .images import save_png
    from .video import write_video

    views = rec.views()
    write_video(out_dir / f"{stem}.mp4", movie_frames(views), fps=fps)
    save_png(out_dir / f"{stem}.png", sheet(views, rec.tubelet_size))
    return {"mp4": f"{stem}.mp4", "png": f"{stem}.png", "loss": rec.loss, "baseline_loss": rec.baseline_loss,
            "loss_over_baseline": rec.loss / rec.baseline_loss if rec.baseline_loss > 0 else None,
            "visible_tokens": int(rec.mask.sum()), "masked_tokens": int((~rec.mask).sum()),
            "visible": rec.mask.nonzero()[:, 0].tolist(),  # token indices t*H'W' + h*W' + w
            "heat_scale": rec.heat_scale()}


def parse_needed(path, strategy: str) -> str:
    """The message for an input that has no parse maps under a mask strategy that needs them."""
    item = item_of(Path(path))
    what = "a preprocessed item without parse.npz" if item is not None else "a video, not a preprocessed item"
    return (f"{path}: mask {strategy!r} needs parse maps, and this is {what}: add --crop-face (the face pipeline "
            f"parses it on the spot), give the item of `marlin preprocess`, or choose --mask tube|random|frame")
