"""`marlin predict`: a probed or fine-tuned model applied to new videos.

A :class:`Predictor` holds the task, the head (probe) or classifier (fine-tuning) of one run and the encoder
that run used, checked by its SHA-256 against the run's record. A video's clips are its run's official windows,
aggregated exactly as the run's evaluation does:

- probe: per-clip features, reduced over the clips by the run's ``reduction`` (mean / max), then the head;
- fine-tuning: per-clip logits, averaged over the clips.

Scores come out as logits (what `marlin evaluate` scores) and as probabilities: sigmoid per label (multi-label,
binary), softmax over classes (multi-class); decisions at ``DECISION_THRESHOLD`` for sigmoid outputs, argmax for
multi-class. No shipped task is a regression, so no regression output exists.

`predict_videos` runs many videos into one folder: ``predict.json`` records the run, the encoder fingerprint and
the options (a folder made otherwise is refused); one ``videos/<name>.json`` per input is written as soon as it is
done (a rerun skips them); ``predictions.csv`` / ``predictions.json`` are assembled at the end; failures are
listed in ``failed.txt``. Many machines: ``part=(i, n)`` predicts the inputs whose output name hashes to part i
(`marlin.parts`, the split of `marlin preprocess --part` and `marlin extract --part`), all parts into one folder,
each with its record ``predict.part-i-of-n.json`` and ``failed.part-i-of-n.txt``; `merge_predictions` checks the
split and assembles the files one run writes.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..batch import BatchResult
from ..data.layout import input_names
from ..devices import resolve_device
from ..errors import MarlinError
from ..precision import Precision
from .metrics import DECISION_THRESHOLD
from .tasks import Task

RECORD = "predict.json"
PER_VIDEO = "videos"  # OUT/videos/<name>.json: one finished input each, so a long run resumes
CHECKPOINTS = {"probe": "head.safetensors", "finetune": "model.safetensors"}
FACES = ("one", "all")


@dataclass(frozen=True)
class Prediction:
    """The outputs of one video (one face track with ``faces="all"``).

    ``logits``: the aggregated scores, one per output (binary: one); ``probabilities``: label / class name ->
    probability (binary: the positive class's); ``decisions``: label name -> 0/1 at the threshold (multi-label,
    binary); ``predicted``: the class name (multi-class, binary); ``clips``: per-clip logits when asked for."""

    name: str
    source: str
    face: str | None
    n_clips: int
    logits: list[float]
    probabilities: dict[str, float]
    decisions: dict[str, int] | None
    predicted: str | None
    clips: list[list[float]] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def find_run_checkpoint(run) -> Path:
    """The head.safetensors / model.safetensors of RUN: that file, or the one checkpoint in a run folder (a folder
    with several runs - folds, few-shot fractions, seeds - is refused, listing them)."""
    run = Path(run)
    if not run.exists():
        raise MarlinError(f"{run}: no such run folder or checkpoint")
    if run.is_file():
        return run
    found = sorted(p for name in CHECKPOINTS.values() for p in run.rglob(name))
    if not found:
        raise MarlinError(f"{run}: holds no {' or '.join(CHECKPOINTS.values())}: give a `marlin probe` or "
                          f"`marlin finetune` output folder, or its checkpoint")
    if len(found) > 1:
        listed = ", ".join(str(p.relative_to(run)) for p in found[:6]) + (" ..." if len(found) > 6 else "")
        raise MarlinError(f"{run}: holds {len(found)} runs ({listed}): give the checkpoint of one")
    return found[0]


def _probabilities(task: Task, logits: torch.Tensor) -> tuple[dict, dict | None, str | None]:
    """(probabilities, decisions, predicted class) of one video's aggregated logits (K,)."""
    if task.kind == "multiclass":
        probs = logits.double().softmax(0).tolist()
        return dict(zip(task.labels, probs)), None, task.labels[int(np.argmax(probs))]
    probs = logits.double().sigmoid().tolist()
    if task.kind == "binary":
        positive = task.labels[-1]  # class names, negative first
        p = probs[0]
        return {positive: p}, {positive: int(p >= DECISION_THRESHOLD)}, task.labels[int(p >= DECISION_THRESHOLD)]
    return (dict(zip(task.labels, probs)), {n: int(p >= DECISION_THRESHOLD) for n, p in zip(task.labels, probs)},
            None)


def _checked_encoder(ckpt: Path, meta: dict, encoder, device):
    """The frozen encoder of a probe run: the recorded weights (or ``encoder``), refused unless their SHA-256 is
    the run's."""
    from ..checkpoints import file_sha256
    from .config import load_run_config
    from .model import load_encoder

    spec = load_run_config(meta["run"], required=()).encoder
    recorded = meta.get("encoder")
    if recorded is None:
        raise MarlinError(f"{ckpt}: the run does not record its encoder's fingerprint (it predates `marlin "
                          f"predict`), so the encoder cannot be checked: run `marlin probe` again into a new --out")
    if str(spec.weights) == "random":
        if encoder is not None:
            raise MarlinError(f"--encoder {encoder}: this run probed a randomly initialised encoder (seed "
                              f"{spec.seed}); it is rebuilt from its seed, no file is needed")
        return load_encoder(spec).to(device), recorded
    want = recorded["weights_sha256"]
    path = Path(encoder if encoder is not None else spec.weights)
    if not path.is_file():
        if encoder is not None:
            raise MarlinError(f"--encoder {path}: no such file")
        raise MarlinError(f"{path}: the encoder weights recorded by {ckpt} are missing (SHA-256 {want}): give "
                          f"--encoder PATH with the same file")
    got = file_sha256(path)
    if got != want:
        which = "--encoder " if encoder is not None else ""
        raise MarlinError(f"{which}{path}: SHA-256 {got} is not the encoder {ckpt} was trained on (SHA-256 {want})")
    spec.weights = str(path)
    return load_encoder(spec).to(device), recorded


class Predictor:
    """One run's model, ready for new videos. Build with :meth:`from_run`."""

    def __init__(self, task: Task, mode: str, scorer, checkpoint: Path, meta: dict, encoder: dict,
                 precision: Precision, clip_frames: int, size: int, batch_size: int):
        self.task, self.mode, self.checkpoint, self.meta = task, mode, checkpoint, meta
        self.encoder, self.precision, self.batch_size = encoder, precision, batch_size
        self.clip_frames, self.size = clip_frames, size
        self._scorer = scorer  # clips iterable -> (per-clip logits (n, K), aggregated logits (K,))
        windows = meta["run"].get("windows") or {}
        self.sample_rate, self.stride = int(windows.get("sample_rate", 2)), int(windows.get("stride", 16))

    @classmethod
    def from_run(cls, run, encoder=None, precision: Precision | str | None = None, device="auto",
                 batch_size: int | None = None) -> "Predictor":
        """The model of RUN (a `marlin probe` / `marlin finetune` output folder holding one run, or its
        head.safetensors / model.safetensors). ``encoder``: the probe's encoder weights at another path (checked
        by SHA-256); ``precision``: a `Precision` resolved for ``device``, or auto | 32 | bf16 | 16 (GPUs),
        default the run's (resolved here); ``device``: auto (CUDA when
        available) | cpu | cuda[:k]; ``batch_size``: clips per forward, default by where the model runs
        (`marlin.extract.clips_per_call`: 8 on a GPU, one preset clip on a CPU)."""
        from ..checkpoints import file_sha256
        from ..extract import clips_per_call, encode_clips
        from .linear import reduce_clips
        from .model import classifier_from_checkpoint, load_downstream_checkpoint, probe_head

        device = resolve_device(device)
        ckpt = find_run_checkpoint(run)
        tensors, meta = load_downstream_checkpoint(ckpt)
        mode = meta.get("mode")
        if mode not in CHECKPOINTS:
            raise MarlinError(f"{ckpt}: not a probe or fine-tuning checkpoint (mode {mode!r})")
        task = Task.from_dict(meta["task"])
        if mode == "probe":
            requested = precision or meta["run"].get("extract_precision", "32")
            resolved = requested if isinstance(requested, Precision) else Precision.resolve(requested, device)
            marlin, record = _checked_encoder(ckpt, meta, encoder, device)
            head = probe_head(tensors, ckpt, marlin.config.encoder_embed_dim)
            head.eval()
            reduction = meta.get("reduction", meta["run"].get("reduction", "mean"))

            def scorer(clips):
                feats = encode_clips(lambda x: marlin.extract_features(x, keep_seq=False, precision=resolved),
                                     clips, bs, device)
                with torch.no_grad():
                    video = head(torch.from_numpy(reduce_clips([feats.numpy()], reduction)))[0]
                    return head(feats), video
            cfg = marlin.config
        else:
            if encoder is not None:
                raise MarlinError(f"--encoder {encoder}: a fine-tuned model carries its own encoder in {ckpt}")
            model, _ = classifier_from_checkpoint(ckpt)
            requested = precision or model.precision  # the run's: what it was trained in
            resolved = requested if isinstance(requested, Precision) else Precision.resolve(requested, device)
            model.precision = resolved
            model.to(device)
            record = {"model": None, "config": model.config.to_dict(), "weights_sha256": file_sha256(ckpt),
                      "fine_tuned_from": meta.get("encoder")}

            def scorer(clips):
                logits = encode_clips(model, clips, bs, device)
                return logits, logits.mean(0)
            cfg = model.config
        bs = clips_per_call(cfg, device, batch_size)  # the scorers' clips per call, where the model runs
        return cls(task, mode, scorer, ckpt, meta, record, resolved, cfg.n_frames, cfg.img_size, bs)

    @property
    def record(self) -> dict:
        """What the predictions depend on: the run, the encoder's fingerprint, the windows and the precision."""
        from ..checkpoints import file_sha256

        return {"format": "marlin-predict/1",
                "run": {"checkpoint": str(self.checkpoint.resolve()), "sha256": file_sha256(self.checkpoint),
                        "mode": self.mode, "task": self.task.to_dict()},
                "encoder": self.encoder,
                "windows": {"sample_rate": self.sample_rate, "stride": self.stride},
                "aggregation": "head of the reduced clip features" if self.mode == "probe" else "mean of clip logits",
                "threshold": DECISION_THRESHOLD, "precision": self.precision.name}

    def predict_clips(self, clips: Iterable[np.ndarray], name: str = "", source: str = "", face: str | None = None,
                      per_clip: bool = False) -> Prediction:
        """The prediction of one video given as its clips (L, S, S, 3) uint8."""
        per, video = self._scorer(clips)
        probs, decisions, predicted = _probabilities(self.task, video.float())
        return Prediction(name, source, face, int(len(per)), [float(v) for v in video.tolist()], probs, decisions,
                          predicted, per.tolist() if per_clip else None)

    def _clips(self, path: Path, crop_face: bool):
        from .sources import eval_clips

        return eval_clips(path, self.clip_frames, self.size, self.sample_rate, self.stride, crop_face)

    def predict_video(self, path, crop_face: bool = False, faces: str = "one", per_clip: bool = False,
                      name: str | None = None, min_track_frames: int = 16):
        """The :class:`Prediction` of a video file, a preprocessed item folder or a folder of frames; with
        ``faces="all"`` (needs ``crop_face``) a list, one per face track of at least ``min_track_frames`` frames
        (``face0``, ``face1``, ...: `marlin.extract.face_track_clips`)."""
        from ..data.layout import is_item, item_video

        path = Path(path)
        name = path.stem if name is None else name
        if faces not in FACES:
            raise ValueError(f"faces must be one of {FACES}, got {faces!r}")
        if faces == "all" and not crop_face:
            raise ValueError("faces='all' needs crop_face: the face pipeline finds the faces")
        source = item_video(path) if path.is_dir() and is_item(path) else path
        if source != path or source.is_dir():  # preprocessed crops are taken as they are
            return self.predict_clips(self._clips(source, False), name, str(path), None, per_clip)
        if faces == "one":
            return self.predict_clips(self._clips(source, crop_face), name, str(path), None, per_clip)
        from ..extract import face_track_clips

        tracks = face_track_clips(source, self.clip_frames, self.sample_rate, self.stride, False, self.size,
                                  min_track_frames)
        return [self.predict_clips(clips, name, str(path), face, per_clip) for face, clips in tracks]


def _rows(task: Task, predictions: list[Prediction], faces: str) -> tuple[list[str], list[dict]]:
    """CSV columns and rows: name, [face], source, n_clips, then per output prob_<name> and the decision."""
    head = ["name"] + (["face"] if faces == "all" else []) + ["source", "n_clips"]
    if task.kind == "multilabel":
        outs = [c for n in task.labels for c in (f"prob_{n}", f"pred_{n}")]
    elif task.kind == "binary":
        outs = [f"prob_{task.labels[-1]}", "predicted"]
    else:
        outs = [f"prob_{n}" for n in task.labels] + ["predicted"]
    rows = []
    for p in predictions:
        row = {"name": p.name, "face": p.face, "source": p.source, "n_clips": p.n_clips}
        row.update({f"prob_{n}": f"{v:.6f}" for n, v in p.probabilities.items()})
        if task.kind == "multilabel":
            row.update({f"pred_{n}": v for n, v in p.decisions.items()})
        else:
            row["predicted"] = p.predicted
        rows.append(row)
    return head + outs, rows


def _dest(out: Path, name: str) -> Path:
    """Where the predictions of the input named ``name`` are kept: ``OUT/videos/<name>.json``."""
    return out / PER_VIDEO / f"{name}.json"


def _read_predictions(out: Path, names: Iterable[str]) -> list[Prediction]:
    """The predictions of the inputs ``names`` (in that order) kept in ``OUT/videos`` (failed inputs have none)."""
    return [Prediction(**p) for name in names if _dest(out, name).is_file()
            for p in json.loads(_dest(out, name).read_text())["predictions"]]


def _write_predictions(out: Path, record: dict, names: Iterable[str]) -> list[Prediction]:
    """``predictions.csv`` and ``predictions.json`` of the inputs ``names`` (in that order); returns the
    predictions."""
    from ..atomic import to_json, write_json, write_text

    options = record["options"]
    predictions = _read_predictions(out, names)
    columns, rows = _rows(Task.from_dict(record["run"]["task"]), predictions, options["faces"])
    text = io.StringIO()
    writer = csv.DictWriter(text, columns + ["run", "encoder_sha256", "options"], extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    stamp = {"run": record["run"]["checkpoint"], "encoder_sha256": record["encoder"].get("weights_sha256", "random"),
             "options": to_json({**options, "precision": record["precision"]}, None)}
    for row in rows:
        writer.writerow({**row, **stamp})
    write_text(out / "predictions.csv", text.getvalue())
    write_json(out / "predictions.json", {**record, "predictions": [
        {k: v for k, v in p.to_dict().items() if options["per_clip"] or k != "clips"} for p in predictions]})
    return predictions


def predict_videos(predictor: Predictor, inputs: Sequence, out, crop_face: bool = False, faces: str = "one",
                   per_clip: bool = False, overwrite: bool = False, progress: bool = True,
                   min_track_frames: int = 16, debug: bool = False,
                   part: tuple[int, int] | None = None) -> tuple[list[Prediction], BatchResult]:
    """Predictions of every video of ``inputs`` into ``out`` (see the module docstring); returns them (in name
    order) and the run's `BatchResult` (written, skipped, failed "path: problem"). ``part`` (i, n): only the
    inputs of part i of n, recorded in ``predict.part-i-of-n.json``; ``predictions.csv`` / ``.json`` are then
    written by `merge_predictions` once every part is done."""
    from ..atomic import write_json
    from ..batch import run_batch
    from ..extract import claim_output
    from ..parts import part_record, part_tag, select_part
    from ..video import output_dir

    if faces not in FACES:
        raise MarlinError(f"--faces {faces}: expected one of {', '.join(FACES)}")
    if faces == "all" and not crop_face:
        raise MarlinError("--faces all needs --crop-face: the face pipeline finds the faces")
    jobs = input_names(inputs)  # a missing input, an empty folder or a name clash ends here
    if part is not None:
        jobs, inputs_seen = select_part(jobs, part)
    out = output_dir(out)
    options = {"crop_face": bool(crop_face), "faces": faces, "per_clip": bool(per_clip),
               **({"min_track_frames": int(min_track_frames)} if faces == "all" else {})}
    record = {**predictor.record, "options": options}
    claim_output(out, record, RECORD, "predictions.csv", "predictions")  # a part of other options ends here

    def work(path: Path, name: str) -> None:
        got = predictor.predict_video(path, crop_face, faces, per_clip, name, min_track_frames)
        write_json(_dest(out, name), {"predictions": [p.to_dict() for p in (got if isinstance(got, list) else [got])]})

    result = run_batch(jobs, work, lambda name: _dest(out, name).is_file() and not overwrite, out, "predict",
                       progress, debug, "failed.txt" if part is None else f"failed.{part_tag(part)}.txt")
    names = [name for _, name in jobs]
    if part is not None:
        write_json(out / f"predict.{part_tag(part)}.json", part_record(part, inputs_seen, jobs, result))
        return _read_predictions(out, names), result
    return _write_predictions(out, record, names), result


def merge_predictions(out) -> tuple[list[Prediction], list[str]]:
    """`marlin predict --merge --out OUT`: check that OUT holds all n parts of one split (`marlin.parts.check_parts`:
    made from the same inputs, every input predicted or listed as failed; each part claimed ``predict.json``, so
    their run and options agree), then write ``predictions.csv``, ``predictions.json`` and ``failed.txt`` as one
    run over all inputs writes them. Returns the predictions (in name order) and the failure lines."""
    from ..parts import check_parts, merge_failures

    out = Path(out)
    try:
        record = json.loads((out / RECORD).read_text())
    except FileNotFoundError:
        raise MarlinError(f"{out}: no {RECORD}: not a `marlin predict` output folder") from None
    except ValueError as e:
        raise MarlinError(f"{out / RECORD}: unreadable predictions record ({e})") from None
    _, parts = check_parts(out, "predict", "predict", lambda name: _dest(out, name).is_file())
    names = sorted(name for p in parts for name in p["names"])  # the order of one run: input_names sorts by name
    predictions = _write_predictions(out, record, names)
    return predictions, merge_failures(out, parts).splitlines()
