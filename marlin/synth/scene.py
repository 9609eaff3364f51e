"""Turn one frame's face shapes and head pose into a display list (what to paint, in which order, with
which LaPa class)."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..data.layout import PARSE_CLASSES
from .geometry import rotate, turn
from .identity import Identity
from .raster import Prim, rgb255

C = {name: i for i, name in enumerate(PARSE_CLASSES)}
# LaPa's "left" parts are drawn on the image-left side (the person's right); flip here if needed.
LEFT_ON_IMAGE_LEFT = True
_UNIT_CIRCLE = np.stack([np.cos(np.arange(16) * np.pi / 8), np.sin(np.arange(16) * np.pi / 8)], -1)  # (16, 2)


@dataclass
class Pose:
    """Head pose in output pixels: ``centre`` (2,) of face space, ``scale`` pixels per face unit.
    Not to be changed once used: `head` keeps the rotation it builds on first use (`warp` makes a new pose)."""

    centre: np.ndarray
    scale: float
    roll: float
    yaw: float
    pitch: float
    body_centre: np.ndarray
    body_scale: float
    @functools.cached_property
    def _rotation(self) -> tuple:
        """What every `head` call of this pose shares: `turn(yaw, pitch)` and the scaled roll matrix (2, 2)."""
        c, s = np.cos(self.roll), np.sin(self.roll)
        return turn(self.yaw, self.pitch), np.array([[c, -s], [s, c]]) * self.scale

    def head(self, pts3: np.ndarray) -> np.ndarray:
        """(N, 3) face-space points -> (N, 2) pixels."""
        trig, rot = self._rotation
        uv = rotate(pts3, self.yaw, self.pitch, trig)
        return uv @ rot.T + self.centre

    def project(self, shapes: dict, body=("neck", "shoulders")) -> dict:
        """All (N, 3) shapes -> (N, 2) pixels in one batch (``body`` shapes skip the head rotation)."""
        names = [n for n, v in shapes.items() if v.ndim == 2 and v.shape[1] == 3 and n not in body]
        parts = [shapes[n] for n in names]
        flat = self.head(np.concatenate(parts))
        out, i = {}, 0
        for n, part in zip(names, parts):
            out[n] = flat[i:i + len(part)]
            i += len(part)
        for n in body:
            out[n] = self.body(shapes[n])
        return out

    def body(self, pts3: np.ndarray) -> np.ndarray:
        return pts3[:, :2] * self.body_scale + self.body_centre

    def warp(self, k: float, offset) -> "Pose":
        """The same pose seen through the map p -> (p - offset) * k (e.g. source frame -> crop)."""
        o = np.asarray(offset, float)
        return Pose((self.centre - o) * k, self.scale * k, self.roll, self.yaw, self.pitch,
                    (self.body_centre - o) * k, self.body_scale * k)


def shading(pose: Pose, hw: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 light factor of the face: bright toward the camera-facing point, darker at the rim."""
    h, w = hw
    tn = np.array([np.sin(pose.yaw) * 0.35, np.sin(pose.pitch) * 0.35 - 0.05])
    c, s = np.cos(pose.roll), np.sin(pose.roll)
    hi = pose.centre + pose.scale * np.array([c * tn[0] - s * tn[1], s * tn[0] + c * tn[1]])
    y, x = _pixel_centres(h, w)
    r2 = ((x - hi[0]) ** 2 + (y - hi[1]) ** 2) / (0.95 * pose.scale) ** 2
    return (1.06 - 0.22 * np.minimum(r2, 1.4)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _pixel_centres(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, 1) and (1, W) pixel-centre coordinates (read only)."""
    y, x = np.ogrid[0:h, 0:w]
    y, x = y + 0.5, x + 0.5
    y.flags.writeable = x.flags.writeable = False
    return y, x


def _side(name: str) -> tuple[int, int]:
    left = name.endswith("_l") == LEFT_ON_IMAGE_LEFT
    return (C["left_brow"], C["left_eye"]) if left else (C["right_brow"], C["right_eye"])


def _strands(cap: np.ndarray, n: int = 6) -> list[np.ndarray]:
    """A few (2, 3) lines inside the hair cap that give it texture: from its outer arc toward the hairline."""
    outer, centre = cap[:25], cap[25 + 6 + 7]
    return [np.stack([outer[i], outer[i] * 0.55 + centre * 0.45]) for i in range(2, 24, 22 // n)]


def palette(idn: Identity) -> dict:
    """The 0..255 colours of every primitive of ``idn``'s face (what no frame changes: computed once per clip)."""
    skin, hair = idn.skin, idn.hair
    rgb = {"hair_back": hair * 0.85, "shirt": idn.shirt, "neck": skin * 0.78, "skin": skin,
           "cheek": skin * [1.03, 0.9, 0.9], "beard": hair * 0.8, "nose": skin * 0.92, "nostril": skin * 0.4,
           "wrinkle": skin * 0.6, "lip_upper": idn.lips, "lip_lower": idn.lips * 1.08,
           "inner_mouth": (0.35, 0.07, 0.1), "teeth": (0.95, 0.93, 0.88), "mouth_line": idn.lips * 0.55,
           "eye": (0.94, 0.94, 0.9), "iris": idn.iris, "pupil": (0.03, 0.03, 0.03), "lid": (0.12, 0.08, 0.07),
           "brow": idn.brow_colour, "hair": hair, "strand": hair * 0.7 + 0.02, "glasses": idn.glasses_colour,
           "hat_crown": idn.hat_colour, "hat_brim": idn.hat_colour * 0.8}
    return {name: rgb255(c) for name, c in rgb.items()}


def look(idn: Identity, static: dict) -> dict:
    """What `build` draws the same in every frame of a clip: the colours and the hair strands (face space);
    ``static``: `geometry.static_shapes` of the clip."""
    return {"palette": palette(idn), "strands": np.concatenate(_strands(static["hair_cap"]))}


def build(idn: Identity, shapes: dict, pose: Pose, lk: dict | None = None) -> list[Prim]:
    """Display list of one frame, back to front. Points are in output pixels; ``lk``: `look(idn, static)`
    when the caller keeps it for the clip."""
    lk = look(idn, shapes) if lk is None else lk
    pal = lk["palette"]
    shapes = dict(shapes)
    shapes["strands"] = lk["strands"]
    P = pose.project(shapes)
    px = pose.scale / 100.0  # line widths scale with the face
    out: list[Prim] = []
    if "hair_back" in shapes:
        out.append(Prim(P["hair_back"], pal["hair_back"], C["hair"]))
    out.append(Prim(P["shoulders"], pal["shirt"], C["background"]))
    out.append(Prim(P["neck"], pal["neck"], C["background"]))
    out.append(Prim(P["outline"], pal["skin"], C["skin"]))
    for name in ("cheek_l", "cheek_r"):
        if name in shapes:
            out.append(Prim(P[name], pal["cheek"], None))
    if "beard" in shapes:
        out.append(Prim(P["beard"], pal["beard"], C["skin"]))
    out.append(Prim(P["nose"], pal["nose"], C["nose"]))
    for name in ("nostril_l", "nostril_r"):
        out.append(Prim(P[name], pal["nostril"], C["nose"]))
    if "wrinkles" in shapes:
        w = P["wrinkles"]
        for i in range(0, len(w), 2):
            out.append(Prim(w[i:i + 2], pal["wrinkle"], None, line=2.5 * px))
    out.append(Prim(P["lip_upper"], pal["lip_upper"], C["upper_lip"]))
    out.append(Prim(P["lip_lower"], pal["lip_lower"], C["lower_lip"]))
    if "inner_mouth" in shapes:
        inner = P["inner_mouth"]
        out.append(Prim(inner, pal["inner_mouth"], C["inner_mouth"]))
        out.append(Prim(P["teeth"], pal["teeth"], None, clip=inner))
    else:
        out.append(Prim(P["mouth_line"], pal["mouth_line"], None, line=1.5 * px))
    for name in ("eye_l", "eye_r"):
        _, eye_cls = _side(name)
        eye = P[name]
        lid = P[name + "_lid"]
        if shapes[name + "_open"][0] * pose.scale >= 0.5:  # a closed eye is only its lid line
            out.append(Prim(eye, pal["eye"], eye_cls))
            c = P[name + "_iris"][0]
            r = shapes[name + "_iris_r"][0] * pose.scale
            out.append(Prim(c + r * _UNIT_CIRCLE, pal["iris"], None, clip=eye))
            out.append(Prim(c + 0.45 * r * _UNIT_CIRCLE, pal["pupil"], None, clip=eye))
        out.append(Prim(lid, pal["lid"], None, line=2.0 * px))
    for name in ("brow_l", "brow_r"):
        brow_cls, _ = _side(name)
        out.append(Prim(P[name], pal["brow"], brow_cls))
    out.append(Prim(P["hair_cap"], pal["hair"], C["hair"]))
    for i in range(0, len(P["strands"]), 2):
        out.append(Prim(P["strands"][i:i + 2], pal["strand"], None, line=1.5 * px))
    for name in ("glass_l", "glass_r"):
        if name in shapes:
            out.append(Prim(P[name], pal["glasses"], None, line=2.5 * px, closed=True))
    for name in ("glass_bridge", "arm_l", "arm_r"):
        if name in shapes:
            out.append(Prim(P[name], pal["glasses"], None, line=2.5 * px))
    if "hat_crown" in shapes:
        out.append(Prim(P["hat_crown"], pal["hat_crown"], C["background"]))
        out.append(Prim(P["hat_brim"], pal["hat_brim"], C["background"]))
    return out


REGION_PARTS = ("brow_l", "brow_r", "eye_l", "eye_r", "nose", "lip_upper", "lip_lower")


def inner_face(shapes: dict, pose: Pose, grow: float = 0.1) -> np.ndarray:
    """Pixel polygon around brows, eyes, nose and mouth (the region a face swap replaces)."""
    pts = np.concatenate([shapes[k] for k in REGION_PARTS])
    return _hull_grown(pose.head(pts), grow * pose.scale)


def mouth_region(shapes: dict, pose: Pose, grow: float = 0.1) -> np.ndarray:
    pts = np.concatenate([shapes["lip_upper"], shapes["lip_lower"]])
    return _hull_grown(pose.head(pts), grow * pose.scale)


def _hull_grown(pts: np.ndarray, grow: float) -> np.ndarray:
    import cv2

    hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    c = hull.mean(0)
    d = hull - c
    n = np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
    return c + d * (n + grow) / n
