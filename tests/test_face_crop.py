"""Crop size model against the official crops: five faces (fixture) and the two sample videos (end to end).

tests/data/face_crop_official.npz (written by ``benchmarks/crop_calibration.py --write-fixture``): for
10 matched frames of each official sample video 01-05 (7 for video05), our tracker's (468, 3)
landmarks and the official crop box (cx, cy, side), both relative to the landmark centroid.
"""
import json

import numpy as np
import pytest

from conftest import DATA, SAMPLES
from marlin.face import crop as C
from marlin.face.detector import iou

FIXTURE = DATA / "face_crop_official.npz"


@pytest.fixture(scope="module")
def official():
    d = np.load(FIXTURE)
    return d["video"], d["landmarks"].astype(np.float64), d["official"].astype(np.float64)


def test_size_matches_official_on_five_faces(official):
    # the earlier model (1.05 x the landmark box) was 8-10 % small on video02/03: IoU 0.82 / 0.85, ratio 1.10
    video, lms, off = official
    ours = C.raw_boxes(lms)
    for v in np.unique(video):
        m = video == v
        ratio = np.median(off[m, 2] / ours[m, 2])  # official side / ours
        assert 0.93 < ratio < 1.085, (v, ratio)
        assert np.median(iou(C.to_xyxy(ours[m]), C.to_xyxy(off[m]))) >= 0.85, v


def _rotate(lms, deg):
    a = np.radians(deg)
    out = lms.copy()
    out[..., :2] = lms[..., :2] @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]).T
    return out


def test_size_invariant_to_roll_mirror_and_scale(official):
    # distances only: an in-plane rotation (the earlier box model changed by up to 4 % at 45 degrees),
    # a mirror image, a shift and a rescale (all coordinates, depth included) change the size exactly as they should
    lms = official[1]
    side = C.raw_boxes(lms)[:, 2]
    mirror = lms * [-1, 1, 1]
    for moved, k in ((_rotate(lms, 45), 1), (_rotate(lms, -20), 1), (mirror, 1), (lms + [300, -50, 7], 1),
                     (lms * 0.37, 0.37)):
        assert np.allclose(C.raw_boxes(moved)[:, 2], k * side, rtol=1e-9)
    with pytest.raises(ValueError, match="468"):
        C.face_scale(lms[:, :68])


def _official_boxes(video):
    entries = [e for e in json.loads((SAMPLES / f"{video}.official_boxes.json").read_text()) if e["j"] >= 0]
    return np.array([e["j"] for e in entries]), C.to_xyxy(np.array([[e["cx"], e["cy"], e["side"]] for e in entries]))


def test_sample_videos_keep_official_iou():
    from marlin.face import FacePipeline

    pipe = FacePipeline(size=32, parser=None)  # boxes do not depend on the crop size
    for v in ("video01", "video05"):
        clip = pipe.run(SAMPLES / f"{v}.mp4")
        j, off = _official_boxes(v)
        ok = clip.found[j]
        score = iou(clip.boxes[j[ok]], off[ok])
        assert np.median(score) >= 0.9 and np.percentile(score, 10) >= 0.88, (v, np.median(score))
