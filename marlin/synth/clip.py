"""Render one synthetic item: face crops, parse maps, landmarks, boxes, labels (and the raw frames)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import effects, scene
from .background import background
from .expression import expression_controls
from .geometry import face_shapes, landmarks68, static_shapes
from .identity import sample_identity
from .labels import EXPRESSION, hair_colour_class, sample_labels
from .manipulate import sample_manipulation
from .motion import sample_motion
from .raster import paint, polygon_mask
from .rng import item_rng

CROP_MARGIN = 1.1  # crop side = 1.1 x the face box's larger side (the face-pipeline convention)
SUPERSAMPLE = 2    # the image is drawn this many times larger and downsampled (anti-aliasing)


@dataclass
class Clip:
    frames: np.ndarray       # (T, S, S, 3) uint8 RGB crops
    parse: np.ndarray        # (T, S, S) uint8 LaPa-11 classes
    landmarks: np.ndarray    # (T, 68, 2) float32, crop pixels (iBUG order)
    face_boxes: np.ndarray   # (T, 4) float32 detector-style face box [x1, y1, x2, y2] (hairline to chin), crop px
    head_boxes: np.ndarray   # (T, 4) float32 exact box of the whole face oval (forehead included), crop pixels
    crop_boxes: np.ndarray   # (T, 4) float32 crop box in source pixels
    source_size: tuple       # (width, height) of the source frame
    raw: np.ndarray | None   # (T, H, W, 3) uint8 full source frames, when asked for
    labels: dict
    info: dict


def _smooth(x: np.ndarray, window: int = 5) -> np.ndarray:
    """Moving average along axis 0 with edge padding; (T, ...) -> (T, ...)."""
    if len(x) < 2:
        return x
    w = min(window, len(x) if len(x) % 2 else len(x) - 1)
    pad = np.pad(x, [(w // 2, w // 2)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    k = np.ones(w) / w
    return np.stack([np.convolve(pad[:, i], k, mode="valid") for i in range(x.shape[1])], 1)


def _bbox(pts: np.ndarray) -> np.ndarray:
    return np.concatenate([pts.min(0), pts.max(0)])


def _backdrop(bg: np.ndarray, out_hw, bg_affine=None) -> np.ndarray:
    """(ss*H, ss*W, 3) background of one view: ``bg`` warped by ``bg_affine`` (a copy of it when None)."""
    h, w = out_hw
    ss = SUPERSAMPLE
    if bg_affine is None:
        return bg.copy()
    return cv2.warpAffine(bg, bg_affine, (w * ss, h * ss), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _draw(idn, shapes, pose: scene.Pose, canvas: np.ndarray, out_hw, lk=None,
          light=None) -> tuple[np.ndarray, np.ndarray]:
    """One frame: the face painted over ``canvas`` (`_backdrop`, painted in place) -> (H, W, 3) image, (H, W) parse.
    ``lk``: `scene.look` of the face, ``light``: `scene.shading` of the view, when the caller keeps them."""
    h, w = out_hw
    parse = np.zeros((h, w), np.uint8)
    paint(canvas, parse, scene.build(idn, shapes, pose, lk), SUPERSAMPLE)
    img = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
    face = (parse >= 1) & (parse <= 9)
    light = scene.shading(pose, (h, w)) if light is None else light
    # every pixel shaded, the face's kept: the same numbers as shading the face's pixels only
    lit = np.clip(img * light[:, :, None], 0, 255).astype(np.uint8)
    np.copyto(img, lit, where=face[:, :, None])
    return img, parse


def _composite(img, parse, img_d, parse_d, region, alpha: float, sigma: float, gain: float):
    """Paste the donor's ``region`` (pixel polygon) into the frame with a hard seam, blurred by ``sigma`` pixels."""
    h, w = parse.shape
    m = polygon_mask((h, w), region)
    if sigma > 0:
        img_d = cv2.GaussianBlur(img_d, (0, 0), sigma)
    src = np.clip(img_d.astype(np.float32) * gain, 0, 255)
    a = (m * alpha).astype(np.float32)[..., None]
    out = (img.astype(np.float32) * (1 - a) + src * a).round().astype(np.uint8)
    return out, np.where(m & (alpha >= 0.5), parse_d, parse)


def _crop_boxes(poses, shapes) -> np.ndarray:
    """(T, 4) square crop boxes in source pixels: CROP_MARGIN x the detector-style face box, smoothed."""
    boxes = np.stack([_bbox(p.head(s["face_region"])) for p, s in zip(poses, shapes)])
    centre = _smooth((boxes[:, :2] + boxes[:, 2:]) / 2)
    side = _smooth(CROP_MARGIN * np.max(boxes[:, 2:] - boxes[:, :2], 1, keepdims=True))
    return np.concatenate([centre - side / 2, centre + side / 2], 1)


def _render_view(idn, shapes, manip, donor_shapes, t: int, pose, bg, hw, bg_affine, looks=(None, None)):
    """One frame seen through ``pose``: (H, W, 3) image, (H, W) parse, (68, 2) landmarks, manipulation included.
    ``looks``: `scene.look` of the face and of the donor."""
    canvas = _backdrop(bg, hw, bg_affine)
    if manip is None:
        img, par = _draw(idn, shapes, pose, canvas, hw, looks[0])
        return img, par, pose.head(landmarks68(shapes))
    # the donor's frame: the same background and light (computed once, the same numbers)
    canvas_d, light = canvas.copy(), scene.shading(pose, hw)
    img, par = _draw(idn, shapes, pose, canvas, hw, looks[0], light)
    lm = pose.head(landmarks68(shapes))
    img_d, par_d = _draw(manip.donor, donor_shapes, pose, canvas_d, hw, looks[1], light)
    both = {n: np.concatenate([shapes[n], donor_shapes[n]]) for n in scene.REGION_PARTS}
    region = (scene.mouth_region if manip.kind == "mouth" else scene.inner_face)(both, pose)
    img, par = _composite(img, par, img_d, par_d, region, manip.alpha[t], manip.blur * 2 * pose.scale, manip.gain)
    if manip.alpha[t] >= 0.5:  # the landmarks of the pasted parts are the donor's
        sel = slice(48, 68) if manip.kind == "mouth" else slice(17, 68)
        lm[sel] = pose.head(landmarks68(donor_shapes))[sel]
    return img, par, lm


def render_item(seed: int, k: int, frames: int = 16, size: int = 96, fps: float = 25.0, raw: bool = False,
                manipulate: bool = True) -> Clip:
    """Render item ``k`` of the world ``seed`` (depends only on ``seed``, ``k`` and the sizes).

    ``manipulate=False`` renders a manipulated item's original (real) video, with its labels unchanged.
    """
    T, S = int(frames), int(size)
    labels = sample_labels(seed, k)
    idn = sample_identity(item_rng(seed, k, "identity"), labels["appearance"], hair_colour_class(labels["appearance"]))
    mot = sample_motion(item_rng(seed, k, "motion"), labels["action"], T, fps)
    rng_x = item_rng(seed, k, "expression")
    intensity = float(rng_x.uniform(0.75, 1.0))
    ex = expression_controls(EXPRESSION[labels["expression"]], intensity)
    cam = effects.sample_camera(item_rng(seed, k, "camera"))
    manip = None
    if labels["manipulated"] and manipulate:
        manip = sample_manipulation(item_rng(seed, k, "manipulation"), labels["manipulation"], idn, mot.mouth)

    # source frame and head placement
    W, H = 2 * S, 2 * int(round(0.75 * S))
    rng_p = item_rng(seed, k, "place")
    base = rng_p.uniform(0.26, 0.32) * H          # face half-height in source pixels
    c0 = np.array([W / 2 + rng_p.uniform(-0.12, 0.12) * W, H / 2 + rng_p.uniform(-0.04, 0.04) * H])
    bg_src = background(item_rng(seed, k, "background"), H * SUPERSAMPLE, W * SUPERSAMPLE, 2 * base * SUPERSAMPLE)

    poses, shapes, donor_shapes = [], [], [None] * T
    still = static_shapes(idn, ex)  # what no frame changes, once per clip
    donor_still = static_shapes(manip.donor, ex) if manip is not None else None
    looks = (scene.look(idn, still), scene.look(manip.donor, donor_still) if manip is not None else None)
    memo, donor_memo = {}, {}  # the parts of the face that repeat across frames, computed once
    for t in range(T):
        centre = c0 + mot.shift[t] * base
        poses.append(scene.Pose(centre, base * mot.scale[t], mot.roll[t], mot.yaw[t], mot.pitch[t],
                                c0 + mot.shift[t] * base * 0.7, base))
        shapes.append(face_shapes(idn, ex, mot.open_l[t], mot.open_r[t], mot.gaze[t], mot.mouth[t], still, memo))
        if manip is not None:
            speech = mot.mouth[t] if manip.speech is None else manip.speech[t]
            donor_shapes[t] = face_shapes(manip.donor, ex, mot.open_l[t], mot.open_r[t], mot.gaze[t], speech,
                                          donor_still, donor_memo)

    crop_boxes = _crop_boxes(poses, shapes)
    rngs = [item_rng(seed, k, "noise"), item_rng(seed, k, "noise_raw")]  # the crops never depend on `raw`
    out = np.zeros((T, S, S, 3), np.uint8)
    parse = np.zeros((T, S, S), np.uint8)
    lms = np.zeros((T, 68, 2), np.float32)
    fboxes = np.zeros((T, 4), np.float32)
    hboxes = np.zeros((T, 4), np.float32)
    raw_frames = np.zeros((T, H, W, 3), np.uint8) if raw else None
    for t in range(T):
        kk = S / (crop_boxes[t, 2] - crop_boxes[t, 0])  # source -> crop scale
        ss = SUPERSAMPLE
        bg_aff = np.array([[kk, 0, 0.5 * kk - 0.5 - crop_boxes[t, 0] * kk * ss],
                           [0, kk, 0.5 * kk - 0.5 - crop_boxes[t, 1] * kk * ss]])
        views = [(poses[t].warp(kk, crop_boxes[t, :2]), (S, S), bg_aff, crop_boxes[t, :2], 1 / kk)]
        if raw:
            views.append((poses[t], (H, W), None, (0.0, 0.0), 1.0))
        for vi, (pose, hw, aff, origin, px) in enumerate(views):
            img, par, lm = _render_view(idn, shapes[t], manip, donor_shapes[t], t, pose,
                                        bg_src, hw, aff, looks)
            img = effects.apply(img, cam, mot.gain[t], mot.light[t], rngs[vi], origin, px, (W, H))
            if vi == 0:
                out[t], parse[t], lms[t] = img, par, lm
                fboxes[t] = _bbox(pose.head(shapes[t]["face_region"]))
                hboxes[t] = _bbox(pose.head(shapes[t]["outline"]))
            else:
                raw_frames[t] = img

    info = {"expression_intensity": round(intensity, 3), "manipulation": labels["manipulation"],
            "camera": {"blur": round(cam.blur, 4), "noise": round(cam.noise, 4), "jpeg": cam.jpeg, "crf": cam.crf}}
    return Clip(out, parse, lms, fboxes, hboxes, crop_boxes.astype(np.float32), (W, H), raw_frames, labels, info)
