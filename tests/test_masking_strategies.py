"""Mask strategies: exact counts, part-first order on hand-made parse maps, tube/frame shapes, reproducibility."""
import numpy as np
import pytest
import torch

from marlin.masking import STRATEGIES, make_masks, num_visible, token_parts
from marlin.masking.parts import PART_GROUPS

GRID = (8, 14, 14)


def face_parse(t=8, s=224, bg_rows=2):
    """Background in the top `bg_rows` patch rows, hair next row, skin elsewhere, eyes/nose/mouth blocks."""
    p = np.ones((t, s, s), np.uint8)
    p[:, :bg_rows * 16] = 0
    p[:, bg_rows * 16:(bg_rows + 1) * 16] = 10
    p[:, 64:80, 48:80] = 4      # left eye: 1 x 2 patches
    p[:, 64:80, 144:176] = 5    # right eye
    p[:, 96:128, 96:112] = 6    # nose: 2 x 1
    p[:, 160:176, 80:144] = 8   # inner mouth: 1 x 4
    return p


def groups_of(mask_row, parts):
    """Per group, number of visible tokens that belong to it."""
    member = parts.reshape(len(PART_GROUPS), -1)
    return [int((member[g] & mask_row).sum()) for g in range(len(PART_GROUPS))]


def test_num_visible_official():
    assert num_visible(1568, 0.9) == 156
    assert num_visible(1568, 0.75) == 392
    with pytest.raises(ValueError):
        num_visible(1568, 1.0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_counts_shapes_and_seed(strategy):
    parts = token_parts(face_parse(), 16)
    a = make_masks(strategy, 3, GRID, 0.9, [parts] * 3, torch.Generator().manual_seed(5))
    b = make_masks(strategy, 3, GRID, 0.9, [parts] * 3, torch.Generator().manual_seed(5))
    c = make_masks(strategy, 3, GRID, 0.9, [parts] * 3, torch.Generator().manual_seed(6))
    assert a.dtype == torch.bool and a.shape == (3, 1568)
    assert a.sum(1).tolist() == [156, 156, 156]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_token_parts_any_pixel():
    p = np.zeros((1, 32, 32), np.uint8)
    p[0, 15, 15] = 6  # one nose pixel in patch (0, 0)
    parts = token_parts(p, 16)
    assert parts.shape == (7, 1, 2, 2)
    assert parts[2, 0].tolist() == [[True, False], [False, False]]  # nose group
    assert parts[6, 0].all()  # background touches every patch


def test_fasking_keeps_background_then_skin_and_masks_parts():
    parse = face_parse(bg_rows=2)  # 2 rows x 14 = 28 background tokens per tubelet -> 224 > 156
    parts = token_parts(parse, 16)
    m = make_masks("fasking", 4, GRID, 0.9, [parts] * 4, torch.Generator().manual_seed(0))
    for row in m:
        counts = groups_of(row.numpy(), parts)
        assert counts[6] == 156  # all visible tokens touch background
        assert sum(counts[:5]) <= counts[4]  # only hair may share a background patch; no facial part visible
    parse = face_parse(bg_rows=1)  # 112 background tokens < 156: all of them visible, then skin
    parts = token_parts(parse, 16)
    bg = parts[6].reshape(-1)
    m = make_masks("fasking", 4, GRID, 0.9, [parts] * 4, torch.Generator().manual_seed(1))
    face = parts[:4].reshape(4, -1).any(0)  # eyes, nose, mouth
    for row in m.numpy():
        assert row[bg].all()
        assert not row[face].any()


def test_fasking_follows_parts_per_tubelet():
    parse = face_parse(bg_rows=3)
    parse[4:, :, :] = np.roll(parse[4:], 48, axis=2)  # the face moves right in the second half
    parts = token_parts(parse, 16)
    m = make_masks("fasking", 2, GRID, 0.9, [parts] * 2, torch.Generator().manual_seed(2)).view(2, *GRID)
    eye = parts[0] | parts[1]  # (T', H', W')
    assert eye[0].sum() > 0 and not np.array_equal(eye[0], eye[7])
    assert not (m.numpy() & eye[None]).any()


def test_fasking_opp_keeps_parts_first():
    parse = face_parse()
    parse[parse == 10] = 1  # no hair: the part groups hold 8 tubelets x (2+2+2+4) = 80 tokens < 156
    parts = token_parts(parse, 16)
    m = make_masks("fasking_opp", 4, GRID, 0.9, [parts] * 4, torch.Generator().manual_seed(3))
    face = parts[:4].reshape(4, -1).any(0)
    for row in m.numpy():
        assert row[face].all()


def test_tube_and_frame_shapes():
    g = torch.Generator().manual_seed(0)
    tube = make_masks("tube", 2, GRID, 0.9, None, g).view(2, 8, 196)
    for row in tube:
        assert row.any(0).sum() <= 20  # one spatial set of ceil(196 * 0.1) positions for all tubelets
        assert (row.sum(1) >= 16).all()  # 8 x 20 = 160 trimmed at random to 156
    frame = make_masks("frame", 2, GRID, 0.9, None, g).view(2, 8, 196)
    for row in frame:
        assert row.any(1).sum() == 1  # one whole tubelet (ceil(8 * 0.1)), 156 of its 196 tokens


def test_fasking_without_parse_is_random():
    m = make_masks("fasking", 2, GRID, 0.9, [None, None], torch.Generator().manual_seed(0))
    assert m.sum(1).tolist() == [156, 156]


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown mask strategy"):
        make_masks("bogus", 1, GRID)


def test_mask_picture(tmp_path):
    from marlin.masking import save_mask_picture

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (16, 64, 64, 3), dtype=np.uint8)
    parse = np.repeat(face_parse(8, 64, 1)[:, :64, :64] * 0 + 1, 2, axis=0)
    path = save_mask_picture(tmp_path / "m.png", frames, parse, patch_size=8)
    import cv2

    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 5 * 64 and img.shape[1] > 4 * 64
