"""Face crop size model against the official crops, and its invariance (mirror, scale, roll, yaw).

Prints three tables for the current size model (`marlin.face.crop`) and the earlier one
(1.05 x the larger side of the landmark box):
1. IoU with the official crop box (median, 10th percentile, minimum over matched frames) and the
   median ratio official side / our side, per video. video01/05: the boxes in ../shared/samples;
   with ``--official DIR`` (the official repository's ``test/input_sample`` folder: videoNN.mp4 and
   croppedNN.mp4) also videos 02-04, whose official boxes are located here by SIFT matching of each
   cropped frame against every source frame (as the shared JSON files were made), cached in ``--cache``.
2. Invariance on the first ``--frames`` frames of video01: per-frame size of the mirrored, rescaled and
   in-plane rotated (roll) video relative to the original (scale divided out).
3. Yaw on synthetic faces (``marlin.synth``, known geometry, fixed size): size at each yaw relative to yaw 0.
Run from the project root:  python benchmarks/crop_calibration.py [--official DIR] [--frames 48]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from marlin.atomic import atomic_path, write_json
from marlin.face import crop as C
from marlin.face.detector import FaceDetector, iou
from marlin.face.landmarks import FaceLandmarker
from marlin.face.tracker import FaceTracker
from marlin.video import iter_frames, probe

SAMPLES = Path("../shared/samples")
MIN_INLIERS = 15  # matched SIFT inliers for an official box to count


def legacy_side(lms: np.ndarray) -> np.ndarray:
    """The earlier size model: 1.05 x the larger side of the 468-point box."""
    pts = lms[..., :2]
    return 1.05 * (pts.max(-2) - pts.min(-2)).max(-1)


MODELS = {"new": lambda lms: C.SIDE_SCALE * C.face_scale(lms), "old": legacy_side}


def track(frames) -> np.ndarray:
    """(T, 468, 3) landmarks of a frame sequence (NaN where no face), as the pipeline's first pass."""
    tracker = FaceTracker(FaceDetector(), FaceLandmarker())
    out = []
    for f in frames:
        p = tracker.step(np.ascontiguousarray(f))
        out.append(np.full((468, 3), np.nan) if p is None else p)
    return np.stack(out)


def boxes(lms: np.ndarray, fps: float, side_fn) -> np.ndarray:
    """(T, 4) smoothed x1, y1, x2, y2 boxes as the pipeline makes them, with the size model ``side_fn``."""
    pts = lms[..., :2]
    side = side_fn(lms)
    c = (pts.min(1) + pts.max(1)) / 2 + np.asarray(C.CENTER_SHIFT) * side[:, None]
    k = max(fps, 1.0) / 30.0
    return C.to_xyxy(C.smooth_boxes(np.concatenate([c, side[:, None]], 1), (), max(1.0, 2 * k), max(1.0, 4 * k)))


def _sift(sift, img):
    return sift.detectAndCompute(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), None)


def locate_official(video, cropped) -> list[dict]:
    """Each official cropped frame k located in the source: best-matching frame j (SIFT ratio test,
    RANSAC similarity fit), box centre cx, cy and side in source pixels, rotation, inliers n
    (the format of ../shared/samples/*.official_boxes.json; j = -1 where nothing matched)."""
    sift, bf = cv2.SIFT_create(), cv2.BFMatcher(cv2.NORM_L2)
    crops = [_sift(sift, f) for f in iter_frames(cropped)]
    best = [{"k": k, "j": -1, "n": 0} for k in range(len(crops))]
    for j, frame in enumerate(iter_frames(video)):
        kp2, d2 = _sift(sift, frame)
        if d2 is None or len(kp2) < 10:
            continue
        for k, (kp1, d1) in enumerate(crops):
            if d1 is None or len(kp1) < 8:
                continue
            good = [m for m, *r in bf.knnMatch(d1, d2, k=2) if r and m.distance < 0.75 * r[0].distance]
            if len(good) < 8 or len(good) <= best[k]["n"]:
                continue
            a = np.float32([kp1[m.queryIdx].pt for m in good])
            b = np.float32([kp2[m.trainIdx].pt for m in good])
            A, inl = cv2.estimateAffinePartial2D(a, b, method=cv2.RANSAC, ransacReprojThreshold=3.0)
            if A is None or int(inl.sum()) <= best[k]["n"]:
                continue
            s = float(np.hypot(A[0, 0], A[1, 0]))
            c = A @ np.array([111.5, 111.5, 1.0]) + 0.5  # crop centre (224 px crops) in source pixels
            err = np.abs(a @ A[:, :2].T + A[:, 2] - b)[inl.ravel() > 0].mean()
            best[k] = {"k": k, "j": j, "n": int(inl.sum()), "cx": float(c[0]), "cy": float(c[1]), "side": 224 * s,
                       "rot": float(np.degrees(np.arctan2(A[1, 0], A[0, 0]))), "err": float(err)}
    return best


def official_boxes(name: str, official: Path | None, cache: Path) -> list[dict] | None:
    shared = SAMPLES / f"{name}.official_boxes.json"
    if shared.exists():
        return json.loads(shared.read_text())
    if official is None or not (official / f"{name}.mp4").exists():
        return None
    cached = cache / f"{name}.official_boxes.json"
    if not cached.exists():
        print(f"  locating the official crops of {name} (minutes) ...", flush=True)
        cache.mkdir(parents=True, exist_ok=True)
        write_json(cached, locate_official(official / f"{name}.mp4", official / f"cropped{name[5:]}.mp4"))
    return json.loads(cached.read_text())


def video_path(name: str, official: Path | None) -> Path:
    p = SAMPLES / f"{name}.mp4"
    return p if p.exists() else official / f"{name}.mp4"


def write_fixture(path: Path, official: Path | None, cache: Path, per_video: int = 10) -> None:
    """The test fixture of tests/test_face_crop.py: for ``per_video`` evenly spaced matched frames of
    each video, our tracker's (468, 3) landmarks and the official box (cx, cy, side), both relative to
    the landmark centroid, float16 (derived numbers; the videos stay where they are)."""
    names, lms_out, box_out = [], [], []
    for name in (f"video0{i}" for i in range(1, 6)):
        entries = official_boxes(name, official, cache)
        if entries is None:
            raise SystemExit(f"{name}: no official boxes (give --official)")
        e = [x for x in entries if x["j"] >= 0 and x.get("n", 0) >= MIN_INLIERS]
        lms = track(iter_frames(video_path(name, official)))
        e = [x for x in e if np.isfinite(lms[x["j"], 0, 0])]
        for x in (e[i] for i in np.linspace(0, len(e) - 1, min(per_video, len(e))).round().astype(int)):
            c = lms[x["j"], :, :2].mean(0)
            names.append(name)
            lms_out.append(lms[x["j"]] - [*c, 0.0])
            box_out.append([x["cx"] - c[0], x["cy"] - c[1], x["side"]])
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, video=np.array(names), landmarks=np.array(lms_out, np.float16),
                            official=np.array(box_out, np.float32))
    print(f"wrote {path} ({len(names)} frames)")


def _jitter(lms: np.ndarray, side_fn, window: int = 15) -> float:
    """Std of log raw size minus its moving average (frames with a face): frame-to-frame size noise."""
    x = np.log(side_fn(lms[~np.isnan(lms[:, 0, 0])]))
    smooth = np.convolve(np.pad(x, window // 2, mode="edge"), np.ones(window) / window, mode="valid")
    return float(np.std(x - smooth))


DISTANCES = {  # single distances, for the spread comparison
    "landmark box": lambda lms: (lms[..., :2].max(-2) - lms[..., :2].min(-2)).max(-1),
    "outer eyes 3D": lambda lms: np.linalg.norm(lms[..., 33, :] - lms[..., 263, :], axis=-1),
    "cheeks 3D": lambda lms: np.linalg.norm(lms[..., 234, :] - lms[..., 454, :], axis=-1),
    "forehead-chin 3D": lambda lms: np.linalg.norm(lms[..., 10, :] - lms[..., 152, :], axis=-1),
    "eyes-mouth 2D": lambda lms: np.linalg.norm(lms[..., C.EYES, :2].mean(-2) - lms[..., C.MOUTH, :2].mean(-2), axis=-1),
    "combined (new)": C.face_scale,
}


def spread_table(matched: dict) -> None:
    """Per-video median of official side / each distance; the spread max/min; leave-one-video-out."""
    print("   official side / distance, per-video median; spread = max/min - 1")
    for name, fn in DISTANCES.items():
        r = np.array([np.median(side / fn(lms)) for lms, side in matched.values()])
        print(f"   {name:17s} " + " ".join(f"{v:.3f}" for v in r) + f"   spread {100 * (r.max() / r.min() - 1):.1f}%")
    if len(matched) < 3:
        return
    # leave one video out: refit the four distance ratios and the overall scale without it
    names = list(matched)
    parts = {"forehead_chin": DISTANCES["forehead-chin 3D"], "eyes_mouth": DISTANCES["eyes-mouth 2D"],
             "outer_eyes": DISTANCES["outer eyes 3D"], "cheeks": DISTANCES["cheeks 3D"]}
    logr = {p: np.array([np.median(np.log(side / fn(lms))) for lms, side in matched.values()]) for p, fn in parts.items()}
    held = []
    for i in range(len(names)):
        ratio = {p: float(np.exp(np.delete(v, i).mean())) for p, v in logr.items()}
        old, C.RATIO = C.RATIO, ratio
        try:
            m = np.array([np.median(np.log(side / C.face_scale(lms))) for lms, side in matched.values()])
        finally:
            C.RATIO = old
        held.append(np.exp(m[i] - np.delete(m, i).mean()))
    print("   left-out video's official side / predicted (refit without it): " + " ".join(f"{v:.3f}" for v in held))


def official_table(official: Path | None, cache: Path) -> None:
    print("1. IoU with the official crop box per matched frame (median / p10 / min), official side / ours (median);")
    print("   IoU p10 with only our size (official centre) / only our centre; jitter = frame-to-frame size noise (std)")
    print(f"   {'video':8s} {'frames':>6s}  {'new: IoU med  p10   min  ratio size centre jitter':50s}"
          f" {'old: IoU med  p10   min  ratio size centre jitter'}")
    matched = {}
    for name in (f"video0{i}" for i in range(1, 6)):
        entries = official_boxes(name, official, cache)
        if entries is None:
            continue
        e = [x for x in entries if x["j"] >= 0 and x.get("n", 0) >= MIN_INLIERS]
        path = video_path(name, official)
        lms = track(iter_frames(path))
        j = np.array([x["j"] for x in e])
        off = np.array([[x["cx"], x["cy"], x["side"]] for x in e])
        ok = ~np.isnan(lms[j, 0, 0])
        j, off = j[ok], off[ok]
        matched[name] = (lms[j], off[:, 2])
        row = f"   {name:8s} {len(j):6d}"
        for model in ("new", "old"):
            b = boxes(lms, probe(path).fps, MODELS[model])[j]
            side, centre = b[:, 2] - b[:, 0], (b[:, :2] + b[:, 2:]) / 2
            v = iou(b, C.to_xyxy(off))
            size_only = iou(C.to_xyxy(np.c_[off[:, :2], side]), C.to_xyxy(off))
            centre_only = iou(C.to_xyxy(np.c_[centre, off[:, 2]]), C.to_xyxy(off))
            row += (f"   {np.median(v):.3f} {np.percentile(v, 10):.3f} {v.min():.3f} {np.median(off[:, 2] / side):.3f}"
                    f" {np.percentile(size_only, 10):.3f} {np.percentile(centre_only, 10):.3f}"
                    f" {100 * _jitter(lms, MODELS[model]):.2f}%")
        print(row, flush=True)
    spread_table(matched)


def _rotate(frame: np.ndarray, deg: float) -> np.ndarray:
    h, w = frame.shape[:2]
    return cv2.warpAffine(frame, cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0), (w, h))


TRANSFORMS = {  # name -> (frame transform, scale factor of the face)
    "mirror": (lambda f: f[:, ::-1], 1.0),
    "scale 0.5": (lambda f: cv2.resize(f, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA), 0.5),
    "scale 1.5": (lambda f: cv2.resize(f, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_LINEAR), 1.5),
    "roll +15": (lambda f: _rotate(f, 15), 1.0),
    "roll -15": (lambda f: _rotate(f, -15), 1.0),
    "roll +30": (lambda f: _rotate(f, 30), 1.0),
}


def invariance_table(frames: int) -> None:
    src = [f for _, f in zip(range(frames), iter_frames(SAMPLES / "video01.mp4"))]
    base = track(src)
    print(f"2. size of a transformed video01 (first {frames} frames) / original size / scale - 1, "
          "per frame: median and 90th percentile of |.|")
    print(f"   {'transform':10s}  {'new: median   p90|.|':22s} {'old: median   p90|.|'}")
    for name, (fn, scale) in TRANSFORMS.items():
        lms = track(fn(f) for f in src)
        row = f"   {name:10s}"
        for model in ("new", "old"):
            r = MODELS[model](lms) / (MODELS[model](base) * scale) - 1
            r = r[np.isfinite(r)]
            row += f"   {100 * np.median(r):+6.1f}%  {100 * np.percentile(np.abs(r), 90):5.1f}%     "
        print(row, flush=True)


def synth_yaw_frames(seed: int, k: int, yaws_deg, height: int = 360, width: int = 480) -> np.ndarray:
    """Frames of synthetic face ``k`` of world ``seed``, neutral, fixed size and place, turned by each yaw."""
    from marlin.synth import clip as SC
    from marlin.synth import scene
    from marlin.synth.background import background
    from marlin.synth.expression import expression_controls
    from marlin.synth.geometry import face_shapes, static_shapes
    from marlin.synth.identity import sample_identity
    from marlin.synth.labels import hair_colour_class, sample_labels
    from marlin.synth.rng import item_rng

    labels = sample_labels(seed, k)
    idn = sample_identity(item_rng(seed, k, "identity"), labels["appearance"], hair_colour_class(labels["appearance"]))
    ex = expression_controls("neutral", 0.0)
    shapes = face_shapes(idn, ex, 1.0, 1.0, np.zeros(2), 0.0, static_shapes(idn, ex))
    base, c = 0.28 * height, np.array([width / 2, height / 2])
    ss = SC.SUPERSAMPLE
    bg = background(item_rng(seed, k, "background"), height * ss, width * ss, 2 * base * ss)
    return np.stack([SC._draw(idn, shapes, scene.Pose(c, base, 0.0, np.radians(y), 0.0, c, base), bg, (height, width))[0]
                     for y in yaws_deg])


def yaw_table(faces: int) -> None:
    yaws = np.arange(-40, 41, 10)
    rel = {m: [] for m in MODELS}
    for k in range(faces):
        lms = track(synth_yaw_frames(0, k, yaws))  # one tracker over the sweep, as in a video
        for m, fn in MODELS.items():
            s = fn(lms)
            rel[m].append(s / s[len(yaws) // 2])
    print(f"3. synthetic faces ({faces}), fixed size, turned: size at yaw / size at yaw 0 - 1 (mean over faces)")
    print("   yaw (deg)  " + " ".join(f"{y:+6d}" for y in yaws))
    for m in MODELS:
        r = np.nanmean(np.stack(rel[m]), 0) - 1
        print(f"   {m:10s} " + " ".join(f"{100 * v:+5.1f}%" for v in r))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, help="the official repository's test/input_sample folder (videos 02-04)")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "marlin" / "crop_calibration",
                    help="where located official boxes of videos 02-04 are kept")
    ap.add_argument("--frames", type=int, default=48, help="frames of video01 for the invariance table")
    ap.add_argument("--faces", type=int, default=4, help="synthetic faces for the yaw table")
    ap.add_argument("--only", choices=("official", "invariance", "yaw"), help="print one table")
    ap.add_argument("--write-fixture", type=Path, help="write the landmarks + official boxes fixture of the tests and exit")
    a = ap.parse_args()
    if a.write_fixture:
        return write_fixture(a.write_fixture, a.official, a.cache)
    print(f"size model: {C.CONVENTION}")
    if a.only in (None, "official"):
        official_table(a.official, a.cache)
    if a.only in (None, "invariance"):
        invariance_table(a.frames)
    if a.only in (None, "yaw"):
        yaw_table(a.faces)


if __name__ == "__main__":
    main()
