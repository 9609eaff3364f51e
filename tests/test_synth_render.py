"""Synthetic world: determinism, parse maps consistent with the drawn geometry, labels visible in the video."""
import numpy as np
import pytest

from marlin.synth import ACTION, render_item
from marlin.synth.labels import hair_colour_class

S, T = 64, 16
FACE_CLASSES = list(range(1, 10))  # skin .. lower lip: everything but background and hair


@pytest.fixture(scope="module")
def clips():
    return [render_item(7, k, T, S) for k in range(21)]


def test_deterministic_under_seed():
    a, b = render_item(3, 5, 8, S), render_item(3, 5, 8, S)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.parse, b.parse)
    assert np.array_equal(a.landmarks, b.landmarks) and a.labels == b.labels
    c = render_item(4, 5, 8, S)
    assert not np.array_equal(a.frames, c.frames)


def test_static_shapes_are_computed_once_with_the_same_result():
    # render_item computes what no frame changes once per clip (`static_shapes`); every frame's shapes, their
    # key order (the order `scene.project` batches them in) and the pictures are those of computing all per frame
    from marlin.synth import geometry
    from marlin.synth.expression import expression_controls
    from marlin.synth.identity import sample_identity
    from marlin.synth.labels import EXPRESSION, sample_labels
    from marlin.synth.rng import item_rng

    for k in range(8):  # identities with and without beard, glasses, hat, long hair
        lab = sample_labels(0, k)
        idn = sample_identity(item_rng(0, k, "identity"), lab["appearance"], hair_colour_class(lab["appearance"]))
        ex = expression_controls(EXPRESSION[lab["expression"]], 0.9)
        still = geometry.static_shapes(idn, ex)
        for args in ((1.0, 0.2, (0.3, -0.1), 0.0), (0.1, 0.9, (0.0, 0.2), 0.2)):
            full, fast = geometry.face_shapes(idn, ex, *args), geometry.face_shapes(idn, ex, *args, still)
            assert list(full) == list(fast) and "beard_upper" not in fast
            assert all(np.array_equal(full[n], fast[n]) for n in full)
    calls = []
    real = geometry.static_shapes
    import marlin.synth.clip as clip_module

    clip_module.static_shapes = lambda *a: calls.append(1) or real(*a)
    try:
        render_item(0, 3, 6, 32)
    finally:
        clip_module.static_shapes = real
    assert 1 <= len(calls) <= 2  # once for the face (and once for a manipulation's donor), not once per frame


def test_shapes_and_types(clips):
    c = clips[0]
    assert c.frames.shape == (T, S, S, 3) and c.frames.dtype == np.uint8
    assert c.parse.shape == (T, S, S) and c.parse.max() <= 10
    assert c.landmarks.shape == (T, 68, 2) and c.face_boxes.shape == (T, 4) and c.crop_boxes.shape == (T, 4)
    assert c.head_boxes.shape == (T, 4)


def test_face_box_contains_face_classes_and_matches_crop_convention(clips):
    for c in clips:
        for t in range(T):
            ys, xs = np.nonzero(np.isin(c.parse[t], FACE_CLASSES))
            x1, y1, x2, y2 = c.head_boxes[t]  # the whole face oval holds every face class
            assert xs.min() >= np.floor(x1) - 1 and xs.max() <= np.ceil(x2) and ys.min() >= np.floor(y1) - 1
            assert ys.max() <= np.ceil(y2)
            x1, y1, x2, y2 = c.face_boxes[t]  # the detector-style box (brows to chin) sets the crop
            side = max(x2 - x1, y2 - y1)
            assert 0.8 * S / 1.1 < side < 1.2 * S / 1.1  # face box side ~ crop side / 1.1
        # the crop box (source pixels) is a square
        w, h = c.crop_boxes[:, 2] - c.crop_boxes[:, 0], c.crop_boxes[:, 3] - c.crop_boxes[:, 1]
        assert np.allclose(w, h, atol=1e-3)


def _box(pts, grow):
    return pts.min(0) - grow, pts.max(0) + grow


# grow: margin in face units (half the face box height) around the landmarks' box, plus one pixel
@pytest.mark.parametrize("cls, lm, grow", [(4, slice(36, 42), 0.02), (5, slice(42, 48), 0.02),
                                           (7, slice(48, 68), 0.03), (9, slice(48, 68), 0.03), (8, slice(60, 68), 0.02),
                                           (2, slice(17, 22), 0.05), (3, slice(22, 27), 0.05)])
def test_part_pixels_inside_their_landmark_box(clips, cls, lm, grow):
    seen = 0
    for c in clips:
        for t in range(T):
            ys, xs = np.nonzero(c.parse[t] == cls)
            if len(xs) == 0:
                continue
            seen += 1
            unit = (c.face_boxes[t, 3] - c.face_boxes[t, 1]) / 2
            lo, hi = _box(c.landmarks[t, lm], grow * unit + 1)
            inside = (xs + 0.5 >= lo[0]) & (xs + 0.5 <= hi[0]) & (ys + 0.5 >= lo[1]) & (ys + 0.5 <= hi[1])
            assert inside.mean() > 0.97, (cls, c.labels, t)
    assert seen > 0


def test_left_classes_on_image_left(clips):
    for c in clips:
        for t in range(T):
            for a, b in ((4, 5), (2, 3)):
                xa, xb = np.nonzero(c.parse[t] == a)[1], np.nonzero(c.parse[t] == b)[1]
                if len(xa) and len(xb):
                    assert xa.mean() < xb.mean()


def test_real_crops_show_all_parts(clips):
    areas = np.stack([np.bincount(c.parse.ravel(), minlength=11) / c.parse.size for c in clips])
    present = (areas > 0).mean(0)
    always = [0, 1, 4, 5, 6, 7, 9, 10]  # brows may hide under bangs, the inner mouth shows when it opens
    assert present[always].min() == 1.0 and present[[2, 3]].min() > 0.8
    talking = [i for i, c in enumerate(clips) if c.labels["action"][ACTION.index("talk")]]
    assert talking and (areas[talking, 8] > 0).all()
    # class areas near those of real face crops (the face pipeline on ../shared/samples/video01.mp4:
    # background 0.10, skin 0.61, hair 0.20, nose 0.03)
    assert 0.4 < areas[:, 1].mean() < 0.7 and 0.05 < areas[:, 0].mean() < 0.35 and 0.1 < areas[:, 10].mean() < 0.35
    assert 0.01 < areas[:, 6].mean() < 0.05


def _eye_areas(c):
    el, er = (c.parse == 4).sum((1, 2)), (c.parse == 5).sum((1, 2))
    return el / max(el.max(), 1), er / max(er.max(), 1)


def test_actions_are_visible(clips):
    for c in clips:
        a = dict(zip(ACTION, c.labels["action"]))
        el, er = _eye_areas(c)
        both_closed = (np.maximum(el, er) < 0.2).any()
        one_closed = ((np.minimum(el, er) < 0.2) & (np.maximum(el, er) > 0.6)).any()
        assert both_closed == bool(a["blink"]), c.labels
        assert one_closed == bool(a["wink"]), c.labels
        if not (a["blink"] or a["wink"]):
            assert min(el.min(), er.min()) > 0.5
        if c.labels["manipulated"]:
            continue  # below: landmarks, which switch to the donor's in manipulated frames
        box = c.face_boxes
        opening = (c.landmarks[:, 66, 1] - c.landmarks[:, 62, 1]) / (box[:, 3] - box[:, 1])
        assert (np.ptp(opening) > 0.025) == bool(a["talk"]), (c.labels, np.ptp(opening))
        if a["talk"]:
            assert (c.parse == 8).any(axis=(1, 2)).any()
        nose = c.landmarks[:, 30]
        rel_x = (nose[:, 0] - box[:, [0, 2]].mean(1)) / (box[:, 2] - box[:, 0])
        rel_y = (nose[:, 1] - box[:, 1]) / (box[:, 3] - box[:, 1])
        assert (np.ptp(rel_x) > 0.1) == bool(a["turn"]), c.labels
        assert (np.ptp(rel_y) > 0.1) == bool(a["nod"]), c.labels


def test_appearance_is_visible(clips):
    for c in clips:
        app = c.labels["appearance"]
        hair = c.frames[0][c.parse[0] == 10].astype(float).mean(0)
        cls = hair_colour_class(app)
        if cls == 0:
            assert hair.mean() < 70, hair
        if cls == 1:
            assert hair.mean() > 95 and hair[0] > hair[2] + 40, hair
        bottom = c.parse[:, int(0.8 * S):]  # long hair reaches the bottom of the crop
        assert ((bottom == 10).mean() > 0.01) == bool(app[2]), c.labels


def test_manipulation_changes_the_face_not_the_labels():
    for k in range(14):
        c = render_item(7, k, 8, S)
        if c.labels["manipulated"]:
            assert c.labels["manipulation"] in ("swap", "flicker", "mouth")
        else:
            assert c.labels["manipulation"] == "none"


def test_manipulations_are_visible_and_local():
    found = set()
    for k in range(14):
        labels = render_item(7, k, 2, 32).labels
        if not labels["manipulated"] or labels["manipulation"] in found:
            continue
        kind = labels["manipulation"]
        found.add(kind)
        fake, real = render_item(7, k, T, S), render_item(7, k, T, S, manipulate=False)
        assert np.array_equal(fake.face_boxes, real.face_boxes)
        diff = np.abs(fake.frames.astype(float) - real.frames).mean(-1)  # (T, S, S)
        import cv2

        background = ((fake.parse == 0) & (real.parse == 0)).all(0).astype(np.uint8)
        outside = cv2.erode(background, np.ones((9, 9), np.uint8)).astype(bool)  # away from blur and JPEG blocks
        if outside.sum() > 50:  # (long hair may leave no background away from the face)
            assert diff[:, outside].mean() < 2.5, kind  # the background does not change
        face = np.isin(real.parse, FACE_CLASSES).all(0)
        per_frame = diff[:, face].mean(1)
        if kind == "flicker":
            assert per_frame.max() > 4 and per_frame.min() < 0.5 * per_frame.max(), per_frame
        else:
            assert per_frame.min() > 1.0, (kind, per_frame)
        if kind == "mouth":  # only the lower face changes
            eyes_y = int(real.landmarks[:, 36:48, 1].max())
            assert diff[:, :eyes_y].mean() < 0.2 * diff[:, eyes_y:].mean()
    assert found == {"swap", "flicker", "mouth"}


def test_raw_frames_agree_with_crops():
    import cv2

    for k in (0, 1):
        c = render_item(2, k, 4, 48, raw=True)
        assert c.raw.shape == (4, c.source_size[1], c.source_size[0], 3)
        assert np.array_equal(c.frames, render_item(2, k, 4, 48).frames)  # crops do not depend on `raw`
        for t in range(4):
            x1, y1, x2, _ = c.crop_boxes[t]
            s = 48 / (x2 - x1)
            m = np.array([[s, 0, (0.5 - x1) * s - 0.5], [0, s, (0.5 - y1) * s - 0.5]])
            cut = cv2.warpAffine(cv2.GaussianBlur(c.raw[t], (0, 0), 0.5 / s), m, (48, 48))
            assert np.corrcoef(cut.ravel(), c.frames[t].ravel())[0, 1] > 0.9
