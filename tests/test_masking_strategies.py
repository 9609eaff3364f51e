"""Mask strategies: exact counts, part-first order on hand-made parse maps, tube/frame shapes, reproducibility;
`MaskSpec`, the one place the strategy and ratio are checked and the visible count is rounded."""
import math

import numpy as np
import pytest
import torch

from marlin.masking import MaskSpec, MaskStrategy, make_masks, token_parts
from marlin.masking.parts import PART_GROUPS

GRID = (8, 14, 14)


def masks(strategy, batch, grid=GRID, ratio=0.9, parts=None, generator=None):
    return make_masks(MaskSpec(strategy, ratio), batch, grid, parts, generator)


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
    assert MaskSpec(ratio=0.9).num_visible(1568) == 156  # floor(156.8), as the official code
    assert MaskSpec(ratio=0.75).num_visible(1568) == 392


@pytest.mark.parametrize("strategy", list(MaskStrategy))
def test_counts_shapes_and_seed(strategy):
    parts = token_parts(face_parse(), 16)
    a = masks(strategy, 3, parts=[parts] * 3, generator=torch.Generator().manual_seed(5))
    b = masks(strategy, 3, parts=[parts] * 3, generator=torch.Generator().manual_seed(5))
    c = masks(strategy, 3, parts=[parts] * 3, generator=torch.Generator().manual_seed(6))
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


def test_token_parts_most_pixels_puts_a_patch_in_one_group():
    p = np.ones((1, 32, 32), np.uint8)  # skin
    p[0, :16, :16] = 0   # patch (0, 0): all background ...
    p[0, 15, 15] = 6     # ... but one nose pixel
    p[0, :10, 16:] = 0   # patch (0, 1): 160 background pixels, 96 skin
    p[0, 16:, :16] = 6   # patch (1, 0): all nose
    any_ = token_parts(p, 16)
    most = token_parts(p, 16, "most")
    assert any_[2, 0, 0, 0] and any_[6, 0, 0, 0]  # the official rule: the boundary patch is nose and background
    assert most.sum(0).tolist() == [[[1, 1], [1, 1]]]  # exactly one group per patch
    assert most[6, 0].tolist() == [[True, True], [False, False]]  # background holds most pixels of the top row
    assert most[2, 0].tolist() == [[False, False], [True, False]]
    assert most[5, 0].tolist() == [[False, False], [False, True]]
    with pytest.raises(ValueError, match="membership"):
        token_parts(p, 16, "all")


def test_fasking_inner_shows_face_tokens_that_fasking_hides():
    """A face whose outline patches touch the background: Fasking's any-pixel rule counts them as background
    and keeps them visible first, so (at 156 visible of 1568) no skin-only view of the face stays; with
    most-pixel membership, those patches are skin and the background proper is kept first."""
    parse = face_parse(bg_rows=1)
    parse[:, 16:, ::16] = 0  # a background pixel column at the left edge of every patch below the top row
    spec_any, spec_most = MaskStrategy("fasking"), MaskStrategy("fasking_inner")
    assert spec_any.membership == "any" and spec_most.membership == "most"
    assert spec_most.needs_parts
    any_, most = token_parts(parse, 16), token_parts(parse, 16, "most")
    g = torch.Generator().manual_seed(4)
    m_any = masks("fasking", 2, parts=[any_] * 2, generator=g)
    m_most = masks("fasking_inner", 2, parts=[most] * 2, generator=torch.Generator().manual_seed(4))
    background_proper = most[6].reshape(-1)  # the top patch row: 8 x 14 = 112 tokens
    assert background_proper.sum() == 112 and any_[6].reshape(-1).all()  # any-pixel: every token "touches" it
    for row in m_most.numpy():
        assert row[background_proper].all()  # background first, then 44 of the skin tokens
        assert row[most[5].reshape(-1)].sum() == 156 - 112
    face = most[:4].reshape(4, -1).any(0)
    assert not m_most.numpy()[:, face].any()  # the parts stay masked under both rules
    assert (m_any.numpy() & background_proper).sum() < (m_most.numpy() & background_proper).sum()


def test_fasking_keeps_background_then_skin_and_masks_parts():
    parse = face_parse(bg_rows=2)  # 2 rows x 14 = 28 background tokens per tubelet -> 224 > 156
    parts = token_parts(parse, 16)
    m = masks("fasking", 4, parts=[parts] * 4, generator=torch.Generator().manual_seed(0))
    for row in m:
        counts = groups_of(row.numpy(), parts)
        assert counts[6] == 156  # all visible tokens touch background
        assert sum(counts[:5]) <= counts[4]  # only hair may share a background patch; no facial part visible
    parse = face_parse(bg_rows=1)  # 112 background tokens < 156: all of them visible, then skin
    parts = token_parts(parse, 16)
    bg = parts[6].reshape(-1)
    m = masks("fasking", 4, parts=[parts] * 4, generator=torch.Generator().manual_seed(1))
    face = parts[:4].reshape(4, -1).any(0)  # eyes, nose, mouth
    for row in m.numpy():
        assert row[bg].all()
        assert not row[face].any()


def test_fasking_follows_parts_per_tubelet():
    parse = face_parse(bg_rows=3)
    parse[4:, :, :] = np.roll(parse[4:], 48, axis=2)  # the face moves right in the second half
    parts = token_parts(parse, 16)
    m = masks("fasking", 2, parts=[parts] * 2, generator=torch.Generator().manual_seed(2)).view(2, *GRID)
    eye = parts[0] | parts[1]  # (T', H', W')
    assert eye[0].sum() > 0 and not np.array_equal(eye[0], eye[7])
    assert not (m.numpy() & eye[None]).any()


def test_fasking_opp_keeps_parts_first():
    parse = face_parse()
    parse[parse == 10] = 1  # no hair: the part groups hold 8 tubelets x (2+2+2+4) = 80 tokens < 156
    parts = token_parts(parse, 16)
    m = masks("fasking_opp", 4, parts=[parts] * 4, generator=torch.Generator().manual_seed(3))
    face = parts[:4].reshape(4, -1).any(0)
    for row in m.numpy():
        assert row[face].all()


def test_tube_and_frame_shapes():
    g = torch.Generator().manual_seed(0)
    tube = masks("tube", 2, parts=None, generator=g).view(2, 8, 196)
    for row in tube:
        assert row.any(0).sum() == 20  # one spatial set of ceil(156 / 8) positions for all tubelets
        assert (row.sum(1) >= 16).all()  # 8 x 20 = 160 trimmed at random to 156
    frame = masks("frame", 2, parts=None, generator=g).view(2, 8, 196)
    for row in frame:
        assert row.any(1).sum() == 1  # one whole tubelet (ceil(156 / 196)), 156 of its 196 tokens


def test_fasking_without_parse_is_random():
    m = masks("fasking", 2, parts=[None, None], generator=torch.Generator().manual_seed(0))
    assert m.sum(1).tolist() == [156, 156]


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown mask strategy 'bogus'; choose one of fasking, fasking_opp"):
        MaskSpec("bogus", 0.9)


def test_mask_picture(tmp_path):
    from marlin.masking import save_mask_picture

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (16, 64, 64, 3), dtype=np.uint8)
    parse = np.repeat(face_parse(8, 64, 1)[:, :64, :64] * 0 + 1, 2, axis=0)
    from marlin.models.config import MarlinConfig

    path = save_mask_picture(tmp_path / "m.png", frames, parse, MarlinConfig(img_size=64, patch_size=8))
    import cv2

    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 5 * 64 and img.shape[1] > 4 * 64


@pytest.mark.parametrize("ratio", [1.0, 1.5, -0.1, True, "0.9", None])
def test_spec_refuses_a_ratio_outside_0_1(ratio):
    """The ratio's one check (the config, `marlin reconstruct` and the API make a MaskSpec; nothing inward checks)."""
    with pytest.raises(ValueError, match=r"mask ratio must be in \[0, 1\)"):
        MaskSpec("random", ratio)


def test_spec_is_typed():
    spec = MaskSpec("tube", 0.75)
    assert spec.strategy is MaskStrategy.TUBE and spec == MaskSpec(MaskStrategy.TUBE, 0.75)
    assert [s for s in MaskStrategy if s.needs_parts] == [MaskStrategy.FASKING, MaskStrategy.FASKING_OPP,
                                                          MaskStrategy.FASKING_INNER]


# (T', H', W') and ratios of the shipped configs: the presets and ablate14_cpu (the ratio study's ratios), tiny_cpu,
# demo_cpu, and the tests' tiny grids
SHIPPED = [((8, 14, 14), r) for r in (0.5, 0.75, 0.85, 0.9, 0.95)] + [((8, 8, 8), 0.9), ((8, 4, 4), 0.75),
                                                                        ((4, 4, 4), 0.75), ((8, 2, 2), 0.75)]


@pytest.mark.parametrize("grid, ratio", SHIPPED)
def test_one_rounding_rule_gives_the_official_counts_at_the_shipped_configs(grid, ratio):
    """The official code keeps ceil(H'W'(1-r)) tube positions / ceil(T'(1-r)) tubelets, then trims to floor(N(1-r))
    (round up, then down). The one rule (the fewest whole groups that hold floor(N(1-r))) gives the same counts,
    and so the same masks, at every shipped configuration."""
    t, h, w = grid
    spec, n = MaskSpec("tube", ratio), t * h * w
    assert spec.num_groups(n, t) == math.ceil(h * w * (1 - ratio))
    assert spec.num_groups(n, h * w) == math.ceil(t * (1 - ratio))


def test_one_rounding_rule_where_the_official_counts_differ():
    """Where round-up-then-down kept more groups than the visible tokens need, the masks were not made of whole
    groups: 8 x 2 x 2 at 0.85 kept ceil(8 x 0.15) = 2 tubelets for 4 visible tokens; now 1 whole tubelet."""
    spec = MaskSpec("frame", 0.85)
    assert spec.num_visible(32) == 4 and spec.num_groups(32, 4) == 1 and math.ceil(8 * 0.15) == 2
    # 8 x 14 x 14 at 0.01: 1552 visible tokens fill 194 tubes; the official count kept 195 and trimmed 8 tokens
    assert MaskSpec("tube", 0.01).num_groups(1568, 8) == 194 and math.ceil(196 * 0.99) == 195
    row = make_masks(spec, 1, (8, 2, 2), generator=torch.Generator().manual_seed(0))[0].view(8, 4)
    assert row.all(1).sum() == 1 and row.sum() == 4


@pytest.mark.parametrize("grid, ratio", SHIPPED + [((8, 14, 14), 0.01), ((8, 2, 2), 0.85), ((4, 4, 4), 0.3)])
@pytest.mark.parametrize("strategy", list(MaskStrategy))
def test_every_strategy_keeps_num_visible_on_num_groups(strategy, grid, ratio):
    """Each strategy's visible count is `num_visible`; tube and frame spread it over exactly `num_groups` whole
    spatial positions / tubelets."""
    t, h, w = grid
    spec, n = MaskSpec(strategy, ratio), t * h * w
    parts = token_parts(np.ones((t, h * 2, w * 2), np.uint8), 2)
    m = make_masks(spec, 4, grid, [parts] * 4, torch.Generator().manual_seed(1)).view(4, t, h * w)
    assert m.sum((1, 2)).tolist() == [spec.num_visible(n)] * 4
    if strategy is MaskStrategy.TUBE:
        assert m.any(1).sum(1).tolist() == [spec.num_groups(n, t)] * 4
    if strategy is MaskStrategy.FRAME:
        assert m.any(2).sum(1).tolist() == [spec.num_groups(n, h * w)] * 4
