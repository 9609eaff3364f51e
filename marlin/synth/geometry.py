"""Face geometry of one frame in face space, and its pseudo-3D head rotation.

Face space: u to the image right, v down; the neutral face box is u in [-half_width, half_width],
v in [-1, 1]. Every shape is an (N, 3) array of (u, v, z), z = depth toward the camera used by the
yaw/pitch rotation. The 68 landmarks follow the iBUG-300W order (0-16 jaw, 17-26 brows, 27-35 nose,
36-47 eyes, 48-67 mouth), image-left first.
"""
from __future__ import annotations

import numpy as np

from .identity import Identity

DEPTH = 0.55  # depth of the face surface at its centre
# constant sample positions (angles, curve parameters), built once
_RING64 = np.linspace(0, 2 * np.pi, 64, endpoint=False)
_JAW_PHI = np.linspace(2 * np.pi - 1.318, 1.318, 17)
_X15_DOWN = np.linspace(1, -1, 15)
_S5 = np.linspace(0, 1, 5)
_X11 = np.linspace(-1, 1, 11)
_T7 = np.linspace(0, 1, 7)
_ARC9 = np.linspace(np.pi, 0, 9)
_RING12 = np.linspace(0, 2 * np.pi, 12, endpoint=False)
_X13 = np.linspace(-1, 1, 13)
_RING16 = np.linspace(0, 2 * np.pi, 16, endpoint=False)
_BEARD_PHI = np.linspace(2 * np.pi - 1.9, 1.9, 21)
_RING24 = np.linspace(0, 2 * np.pi, 24, endpoint=False)
FACE_TOP = -0.65  # top of the detector-style face box (about the hairline); the head's top is v = -1


def _depth(u, v, a):
    return DEPTH * np.sqrt(np.maximum(1 - (u / (1.08 * a)) ** 2 - (v / 1.12) ** 2, 0))


def _pts(u, v, z) -> np.ndarray:
    out = np.empty((np.size(u), 3))
    out[:, 0], out[:, 1], out[:, 2] = u, v, z
    return out


def _with_depth(u, v, a, extra=0.0):
    u, v = np.asarray(u, float), np.asarray(v, float)
    return _pts(u, v, _depth(u, v, a) + extra)


def _flat(u, v, z=0.0):
    return _pts(u, v, z)


def outline_uv(idn: Identity, phi, jaw_drop: float = 0.0):
    """Head outline at angles ``phi`` (0 = top, pi = chin, increasing clockwise on screen)."""
    phi = np.asarray(phi, float)
    v = -np.cos(phi)
    u = idn.half_width * np.sin(phi) * (1 - 0.28 * idn.jaw * np.maximum(v, 0) ** 2)
    v = v + jaw_drop * np.maximum((v - idn.mouth_y) / (1 - idn.mouth_y), 0)
    return u, v


def _curve(x, power=0.6):
    return np.maximum(1 - x ** 2, 0) ** power


# curves at the constant sample positions, built once (the same numbers as computing them per frame)
_CURVE_X11 = _curve(_X11, 0.8)
_CURVE_LM = np.concatenate([_curve(np.array([-1, -1 / 3, 1 / 3, 1]), 0.8), _curve(np.array([1 / 3, -1 / 3]), 0.8)])
_CURVE_X13 = _curve(_X13)
_CURVE_X13_05 = _curve(_X13, 0.5)
_CURVE_X13_03 = _curve(_X13, 0.3)
_BOW = 1 - 0.3 * np.exp(-(_X13 / 0.18) ** 2)
_TOP = np.arccos(-FACE_TOP)
# the face as a detector boxes it: brow tops (v = FACE_TOP) to chin, cheek to cheek
_FACE_PHI = np.concatenate([[_TOP, 2 * np.pi - _TOP], _RING64[(_RING64 > _TOP) & (_RING64 < 2 * np.pi - _TOP)]])


STATIC_BEFORE_EYES = ("hair_cap", "hair_back", "brow_l_line", "brow_l", "brow_r_line", "brow_r")
STATIC_NOSE = ("nose", "nose_bridge", "nose_base", "nostril_l", "nostril_r", "wrinkles")
STATIC_AFTER_BEARD = ("glass_l", "glass_r", "glass_bridge", "arm_l", "arm_r", "hat_crown", "hat_brim", "neck",
                      "shoulders")


def static_shapes(idn: Identity, ex: dict) -> dict:
    """The shapes of a face that no frame changes (hair, brows, nose, cheeks, glasses, hat, body; face space),
    computed once per clip and shared by `face_shapes` of every frame."""
    a = idn.half_width
    shapes: dict[str, np.ndarray] = {}
    # hair (flat: it sits at the silhouette)
    vol = idn.hair_volume
    temple = -0.05 if not idn.long_hair else 0.1
    phi_t = np.arccos(-temple)
    top = np.linspace(-phi_t, phi_t, 25)
    ou, ov = outline_uv(idn, top)
    outer = np.stack([ou * (1 + vol), (ov - 0.1) * (1 + vol) + 0.1], -1)
    side = np.linspace(phi_t, 0.95, 6)          # down the right side, inside the outline
    su, sv = outline_uv(idn, side)
    inner_r = np.stack([su - 0.07 * np.sign(su), sv], -1)
    x = _X15_DOWN
    if idn.bangs:
        edge_v = -0.45 + 0.05 * (np.arange(15) % 2) - 0.06 * np.abs(x) ** 3
        line = np.stack([x * a * 0.9, edge_v], -1)
    else:
        line = np.stack([x * a * 0.8, idn.hairline + (-0.45 - idn.hairline) * np.abs(x) ** 2.5], -1)
    inner_l = inner_r[::-1] * [-1, 1]
    cap = np.concatenate([outer, inner_r, line, inner_l], 0)
    shapes["hair_cap"] = _flat(cap[:, 0], cap[:, 1])
    if idn.long_hair:
        w = a * (1 + vol) + 0.08
        back = np.concatenate([outer, [[w, 0.5], [w + 0.12, 1.4], [w + 0.15, 2.6], [-w - 0.15, 2.6],
                                       [-w - 0.12, 1.4], [-w, 0.5]]], 0)
        shapes["hair_back"] = _flat(back[:, 0], back[:, 1], -0.2)

    # brows: 5 points per brow on the centre line, inner to outer mirrored to image-left first
    for name, sgn in (("brow_l", -1), ("brow_r", 1)):
        s = _S5  # 0 outer .. 1 inner for the image-left brow
        inner_u = idn.eye_dx - idn.eye_w * 1.0 - ex["brow_pinch"]
        outer_u = idn.eye_dx + idn.eye_w * 1.25
        u = sgn * (outer_u + (inner_u - outer_u) * s)
        v = idn.brow_y - ex["brow"] - ex["brow_inner"] * s ** 2 - 0.05 * np.sin(np.pi * (0.3 + 0.7 * s))
        if sgn > 0:
            u, v = u[::-1], v[::-1]
        shapes[name + "_line"] = _with_depth(u, v, a)
        th = idn.brow_thick * (0.55 + 0.45 * (s if sgn < 0 else s[::-1]))
        poly_u = np.concatenate([u, u[::-1]])
        poly_v = np.concatenate([v - th / 2, (v + th / 2)[::-1]])
        shapes[name] = _with_depth(poly_u, poly_v, a)

    # nose: body polygon, bridge and base landmarks, nostrils, wrinkles
    top_v = idn.eye_y + 0.02
    tip_v = top_v + idn.nose_len
    t = _T7
    half = 0.045 + (idn.nose_w - 0.045) * t ** 1.8
    nu = np.concatenate([-half, half[::-1]])
    nv = np.concatenate([top_v + (tip_v - top_v) * t, (top_v + (tip_v - top_v) * t)[::-1]])
    bottom = _ARC9[1:-1]
    base = np.stack([idn.nose_w * np.cos(bottom), tip_v + 0.035 * np.sin(bottom)], -1)
    nose = np.concatenate([np.stack([nu[:7], nv[:7]], -1), base, np.stack([nu[7:], nv[7:]], -1)])
    nose_z = 0.06 + 0.12 * np.clip((nose[:, 1] - top_v) / (tip_v - top_v), 0, 1)
    shapes["nose"] = _with_depth(nose[:, 0], nose[:, 1], a) + np.stack([0 * nose_z, 0 * nose_z, nose_z], -1)
    bridge_v = top_v + (tip_v - top_v) * np.array([0.05, 0.35, 0.65, 0.95])
    shapes["nose_bridge"] = _with_depth(np.zeros(4), bridge_v, a) + [[0, 0, z] for z in (0.07, 0.1, 0.14, 0.18)]
    bu = idn.nose_w * np.array([-0.8, -0.45, 0, 0.45, 0.8])
    shapes["nose_base"] = _with_depth(bu, tip_v + np.array([0.0, 0.025, 0.035, 0.025, 0.0]), a, 0.1)
    for name, sgn in (("nostril_l", -1), ("nostril_r", 1)):
        ang = _RING12
        shapes[name] = _with_depth(sgn * idn.nose_w * 0.45 + 0.035 * np.cos(ang), tip_v + 0.005 + 0.016 * np.sin(ang),
                                   a, 0.12)
    if ex["wrinkle"] > 0.3:
        wv = top_v + (tip_v - top_v) * np.array([0.3, 0.45])
        shapes["wrinkles"] = np.concatenate([_with_depth([-0.05, 0.05], [w, w - 0.01], a, 0.1) for w in wv])

    if ex["cheek"] > 0.3:
        for name, sgn in (("cheek_l", -1), ("cheek_r", 1)):
            ang = _RING16
            shapes[name] = _with_depth(sgn * (idn.eye_dx + 0.05) + 0.12 * np.cos(ang),
                                       idn.eye_y + 0.25 + 0.07 * np.sin(ang), a)

    if idn.beard:
        mw = idn.mouth_w + 0.08
        my = idn.mouth_y
        upper = np.array([[a * 0.7, 0.32], [mw, my - 0.04], [0.0, my - idn.lip_u - 0.07], [-mw, my - 0.04],
                          [-a * 0.7, 0.32]])
        shapes["beard_upper"] = _with_depth(upper[:, 0], upper[:, 1], a)
    if idn.glasses:
        ang = _RING24
        c, s = np.cos(ang), np.sin(ang)
        sq = np.sign(c) * np.abs(c) ** 0.5, np.sign(s) * np.abs(s) ** 0.5
        for name, sgn in (("glass_l", -1), ("glass_r", 1)):
            shapes[name] = _with_depth(sgn * idn.eye_dx + idn.eye_w * 1.55 * sq[0],
                                       idn.eye_y + 0.01 + idn.eye_h * 2.4 * sq[1], a, 0.08)
        bx = idn.eye_dx - idn.eye_w * 1.55
        shapes["glass_bridge"] = _with_depth([-bx, -bx * 0.4, bx * 0.4, bx],
                                             idn.eye_y - np.array([0.02, 0.05, 0.05, 0.02]), a, 0.08)
        ox = idn.eye_dx + idn.eye_w * 1.55
        for name, sgn in (("arm_l", -1), ("arm_r", 1)):
            shapes[name] = _with_depth([sgn * ox, sgn * a * 0.98], [idn.eye_y - 0.03, idn.eye_y - 0.06], a, 0.04)

    if idn.hat:
        vb = -0.62 if idn.bangs else -0.5  # the brim sits on the forehead, inside the crop, above any fringe
        hw = a * (1 + vol) + 0.04
        crown = np.array([[-hw * 0.92, vb], [-hw * 0.85, -1.5], [-hw * 0.5, -1.85], [hw * 0.5, -1.85],
                          [hw * 0.85, -1.5], [hw * 0.92, vb]])
        shapes["hat_crown"] = _flat(crown[:, 0], crown[:, 1])
        ang = _RING24
        shapes["hat_brim"] = _flat((hw + 0.15) * np.cos(ang), vb + 0.07 * np.sin(ang))

    # body (attached to the head's position, not its rotation)
    shapes["neck"] = _flat([-0.42 * a, 0.42 * a, 0.45 * a, -0.45 * a], [0.5, 0.5, 2.6, 2.6])
    sh = np.array([[-2.6, 4.0], [-2.4, 2.0], [-1.4, 1.5], [-0.5, 1.45], [0.5, 1.45], [1.4, 1.5], [2.4, 2.0],
                   [2.6, 4.0]])
    shapes["shoulders"] = _flat(sh[:, 0], sh[:, 1])
    return shapes


_LM_X = np.array([-1, -1 / 3, 1 / 3, 1, 1 / 3, -1 / 3])  # eye landmarks along the eye (x in [-1, 1])
_MOUTH_LM_X = ([-1], [-2 / 3, -1 / 3, 0, 1 / 3, 2 / 3], [1], [2 / 3, 1 / 3, 0, -1 / 3, -2 / 3], [-1],
               [-1 / 3, 0, 1 / 3], [1], [1 / 3, 0, -1 / 3])  # mouth landmarks on the curves iu ou iu ol mid iu mid il


def _with_depth_many(a, *uvs) -> list[np.ndarray]:
    """`_with_depth(u, v, a)` of several (u, v) pairs through one call (elementwise: the same numbers)."""
    us = [np.asarray(u, float) for u in uvs[0::2]]
    vs = [np.asarray(v, float) for v in uvs[1::2]]
    out = _with_depth(np.concatenate(us), np.concatenate(vs), a)
    ends = np.cumsum([len(u) for u in us]).tolist()
    return [out[i:j] for i, j in zip([0] + ends[:-1], ends)]


def _memo(memo: dict, key, make):
    if key not in memo:
        memo[key] = make()
    return memo[key]


def _key(*xs) -> bytes:
    """Exact (bitwise) cache key of floats: equal keys give equal shapes."""
    return np.asarray(xs, float).tobytes()


def _outline_parts(idn: Identity, jaw_drop) -> dict:
    """Outline, detector-style face region and jaw of a face whose jaw drops by ``jaw_drop``."""
    a = idn.half_width
    shapes = {"outline": _flat(*outline_uv(idn, _RING64, jaw_drop))}
    shapes["face_region"] = _flat(*outline_uv(idn, _FACE_PHI, jaw_drop))
    shapes["jaw"] = _with_depth(*outline_uv(idn, _JAW_PHI, jaw_drop), a) * [1, 1, 0]
    return shapes


def _eye_parts(idn: Identity, ex: dict, name: str, sgn: int, op) -> dict:
    """Polygon (upper lid left->right, lower lid right->left), lid line, opening and landmarks of one eye."""
    a = idn.half_width
    xs = _X11
    cu, cv = sgn * idn.eye_dx, idn.eye_y
    ef = ex["eye"]
    hu = idn.eye_h * ef * op
    hl = idn.eye_h * 0.6 * ef * (1 - 0.35 * ex["cheek"]) * np.sqrt(max(op, 0))
    tilt = -0.012 * sgn
    up_v = cv - hu * _CURVE_X11 + tilt * xs * sgn
    lo_v = cv + hl * _CURVE_X11 + tilt * xs * sgn
    u = cu + idn.eye_w * xs
    lm_x = _LM_X
    lm_v = np.concatenate([cv - hu * _CURVE_LM[:4], cv + hl * _CURVE_LM[4:]]) + tilt * lm_x * sgn
    eye, lm = _with_depth_many(a, np.concatenate([u, u[-2:0:-1]]), np.concatenate([up_v, lo_v[-2:0:-1]]),
                               cu + idn.eye_w * lm_x, lm_v)
    # the lid line is the polygon's upper lid (the same points, so the same depths)
    return {name: eye, name + "_lid": eye[:len(u)].copy(), name + "_open": np.array([hu + hl]),  # 1-D: not points
            name + "_lm": lm}


def _iris_parts(idn: Identity, name: str, sgn: int, gaze) -> dict:
    a = idn.half_width
    cu, cv = sgn * idn.eye_dx, idn.eye_y
    r = idn.eye_h * 0.95
    g = np.asarray(gaze, float)
    iris_u, iris_v = cu + g[0] * (idn.eye_w - r * 0.3), cv + g[1] * idn.eye_h * 0.3
    return {name + "_iris": _with_depth([iris_u], [iris_v], a, 0.02), name + "_iris_r": np.array([r])}


def _mouth_parts(idn: Identity, ex: dict, opening) -> dict:
    """Lips, inner mouth, teeth, mouth line and the 20 mouth landmarks, from four curves over x in [-1, 1]."""
    a = idn.half_width
    mx = _X13
    w = idn.mouth_w * (1 + ex["width"])
    cv = -ex["corner"] * mx ** 2 - ex["asym"] * np.clip(mx, 0, 1) ** 2
    my = idn.mouth_y
    raise_ = ex["upper_lip"] * (1 - 0.5 * mx)
    press = np.clip(1 + ex["open"] * 12, 0.4, 1) if ex["open"] < 0 else 1.0
    iu = my + cv - (opening / 2) * _CURVE_X13 - raise_ * _CURVE_X13_05
    il = my + cv + (opening / 2) * _CURVE_X13
    ou = iu - idn.lip_u * press * (0.3 + 0.7 * _CURVE_X13_05) * _BOW
    ol = il + idn.lip_l * press * (0.3 + 0.7 * _CURVE_X13_05)
    ou[[0, -1]], ol[[0, -1]] = iu[[0, -1]], il[[0, -1]]
    u = w * mx
    mid = (iu + il) / 2
    uv = [np.concatenate([u, u[::-1]]), np.concatenate([ou, iu[::-1]]),
          np.concatenate([u, u[::-1]]), np.concatenate([il, ol[::-1]])]
    names = ["lip_upper", "lip_lower"]
    if opening > 0.012:
        teeth_v = iu + np.minimum(0.045, opening * 0.45) * _CURVE_X13_03
        uv += [np.concatenate([u, u[-2:0:-1]]), np.concatenate([iu, il[-2:0:-1]]),
               np.concatenate([u, u[::-1]]), np.concatenate([iu - 0.01, teeth_v[::-1]])]
        names += ["inner_mouth", "teeth"]
    uv += [u, mid]
    names.append("mouth_line")
    for xq, curve in zip(_MOUTH_LM_X, (iu, ou, iu, ol, mid, iu, mid, il)):
        uv += [w * np.asarray(xq), np.interp(xq, mx, curve)]
    parts = _with_depth_many(a, *uv)
    shapes = dict(zip(names, parts))
    shapes["mouth_lm"] = np.concatenate(parts[len(names):])
    return shapes


def face_shapes(idn: Identity, ex: dict, open_l: float, open_r: float, gaze, speech: float,
                static: dict | None = None, memo: dict | None = None) -> dict:
    """All shapes of one frame (face space). ``ex``: expression controls; ``speech``: extra lip opening;
    ``static``: `static_shapes(idn, ex)` when the caller keeps it for the clip (same result, less work);
    ``memo``: a dict the caller keeps for the frames of one clip (same ``idn`` and ``ex``): the parts of
    the face that repeat across frames (an eye that stays open, a mouth that does not move) are computed
    once (same result, less work). The returned arrays may be shared between frames: do not modify them."""
    st = static_shapes(idn, ex) if static is None else static
    memo = {} if memo is None else memo
    shapes: dict[str, np.ndarray] = {}
    opening = max(0.0, ex["open"]) + speech  # pressed lips (open < 0) only thin the lips
    jaw_drop = 0.55 * opening
    shapes.update(_memo(memo, ("outline", _key(opening)), lambda: _outline_parts(idn, jaw_drop)))
    for name in STATIC_BEFORE_EYES:  # same key order as ever: `scene.project` batches the shapes in this order
        if name in st:
            shapes[name] = st[name]
    for name, sgn, op in (("eye_l", -1, open_l), ("eye_r", 1, open_r)):
        parts = _memo(memo, (name, _key(op)), lambda: _eye_parts(idn, ex, name, sgn, op))
        iris = _memo(memo, (name + "_iris", _key(*np.asarray(gaze, float))),
                     lambda: _iris_parts(idn, name, sgn, gaze))
        shapes.update(parts)
        shapes.update(iris)
    for name in STATIC_NOSE:
        if name in st:
            shapes[name] = st[name]
    shapes.update(_memo(memo, ("mouth", _key(opening)), lambda: _mouth_parts(idn, ex, opening)))
    for name in ("cheek_l", "cheek_r"):
        if name in st:
            shapes[name] = st[name]
    if idn.beard:
        def beard():
            bu, bv = outline_uv(idn, _BEARD_PHI, jaw_drop)
            # the lower edge lies on the outline (silhouette points), the upper one on the face
            return np.concatenate([_flat(bu, bv), st["beard_upper"]])

        shapes["beard"] = _memo(memo, ("beard", _key(opening)), beard)
    for name in STATIC_AFTER_BEARD:
        if name in st:
            shapes[name] = st[name]
    return shapes


def landmarks68(shapes: dict) -> np.ndarray:
    """(68, 3) iBUG-ordered landmarks from a frame's shapes."""
    return np.concatenate([shapes["jaw"], shapes["brow_l_line"], shapes["brow_r_line"], shapes["nose_bridge"],
                           shapes["nose_base"], shapes["eye_l_lm"], shapes["eye_r_lm"], shapes["mouth_lm"]])


def turn(yaw: float, pitch: float) -> tuple:
    """The trigonometry of a head turn, shared by every `rotate` call with these angles."""
    k = DEPTH / 0.8
    return (np.cos(yaw), np.sin(yaw), np.sqrt(np.cos(yaw) ** 2 + (k * np.sin(yaw)) ** 2),
            np.cos(pitch), np.sin(pitch), np.sqrt(np.cos(pitch) ** 2 + (k * np.sin(pitch)) ** 2))


def rotate(points: np.ndarray, yaw: float, pitch: float, trig: tuple | None = None) -> np.ndarray:
    """(N, 3) face-space points -> (N, 2) after turning the head by ``yaw`` (to the image right), ``pitch`` (down).
    ``trig``: `turn(yaw, pitch)` when the caller keeps it."""
    cy, sy, squeeze_u, cp, sp, squeeze_v = turn(yaw, pitch) if trig is None else trig
    u, v, z = points[:, 0], points[:, 1], points[:, 2]
    # z == 0 marks silhouette points (outline, hair): the silhouette of an ellipsoid narrows, never shifts
    flat = z == 0
    out = np.empty((len(points), 2))  # (N, 2)
    out[:, 0] = np.where(flat, u * squeeze_u, u * cy + z * sy)
    z2 = -u * sy + z * cy
    out[:, 1] = np.where(flat, v * squeeze_v, v * cp + z2 * sp)
    return out
