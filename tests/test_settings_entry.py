"""The mask setting and the model geometry are checked once, where they enter (YAML, flags, the API), and passed
inward as typed values (`MaskSpec`, `MarlinConfig`): a bad value is one error line naming its source, and what
is made inward is not resolved or checked again (issue 31 §1)."""
import copy
import dataclasses

import pytest
import yaml

from helpers import TINY_PRETRAIN, make_items
from marlin.cli import main
from marlin.config import ConfigError
from marlin.masking import MaskSpec, MaskStrategy
from marlin.models.config import MarlinConfig
from marlin.train import PretrainConfig, pretrain_config


def one_error_line(capsys, argv, command: str) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"marlin {command}: error: "), err
    assert "Traceback" not in err
    return err


def tiny_yaml(tmp_path, **changes):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**copy.deepcopy(TINY_PRETRAIN), **changes}))
    return path


# ---- the mask setting --------------------------------------------------------------------------------------------
def test_config_makes_the_mask_spec_once():
    cfg = pretrain_config(TINY_PRETRAIN)
    assert cfg.mask == MaskSpec(MaskStrategy.FASKING, 0.75)
    assert cfg.mask is cfg.mask  # made once, the same value for every use
    assert cfg.mask_strategy is MaskStrategy.FASKING  # typed from the YAML's name
    written = cfg.to_dict()
    assert written["mask_strategy"] == "fasking" and type(written["mask_strategy"]) is str  # YAML-safe


def test_bad_ratio_refused_where_the_config_is_read(tmp_path, capsys):
    path = tiny_yaml(tmp_path, mask_percentage_target=1.0)
    with pytest.raises(ConfigError, match=r"bad\.yaml: mask ratio must be in \[0, 1\), got 1\.0"):
        pretrain_config(path)
    with pytest.raises(ConfigError, match=r"mask ratio must be in \[0, 1\), got 1\.5"):
        pretrain_config(TINY_PRETRAIN, values={"mask_ratio": 1.5})
    err = one_error_line(capsys, ["pretrain", "--config", path, "--data", tmp_path, "--out", tmp_path / "run"],
                         "pretrain")
    assert "bad.yaml" in err and "mask ratio must be in [0, 1), got 1.0" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_bad_strategy_refused_where_the_config_is_read(tmp_path, capsys):
    path = tiny_yaml(tmp_path, mask_strategy="fasking_prefix")  # the old prefix test took this for fasking
    with pytest.raises(ConfigError, match=r"bad\.yaml: mask_strategy: expected one of fasking, fasking_opp, "
                                          r"fasking_inner, random, tube, frame, got 'fasking_prefix'"):
        pretrain_config(path)
    err = one_error_line(capsys, ["pretrain", "--config", path, "--data", tmp_path, "--out", tmp_path / "run"],
                         "pretrain")
    assert "bad.yaml" in err and "fasking_prefix" in err


def test_a_config_made_by_hand_is_checked_when_made():
    with pytest.raises(ValueError, match=r"mask ratio must be in \[0, 1\)"):
        PretrainConfig(model=MarlinConfig(), mask_ratio=1.0)
    cfg = pretrain_config(TINY_PRETRAIN)
    other = dataclasses.replace(cfg, mask_strategy="tube")  # as the demo's ablation makes its other runs
    assert other.mask.strategy is MaskStrategy.TUBE and other.mask_strategy is MaskStrategy.TUBE
    with pytest.raises(ValueError, match="unknown mask strategy 'bogus'"):
        dataclasses.replace(cfg, mask_strategy="bogus")


def test_a_resolved_config_is_not_resolved_again(tmp_path):
    """pretrain() takes a resolved config as it is; only new settings make a new one."""
    cfg = pretrain_config(TINY_PRETRAIN)
    assert pretrain_config(cfg) is cfg
    assert pretrain_config(cfg, max_steps=None, seed=None) is cfg  # None: not given
    changed = pretrain_config(cfg, max_steps=3)
    assert changed is not cfg and changed.trainer.max_steps == 3 and changed.mask == cfg.mask


def test_pretraining_clips_use_the_configs_spec_and_geometry(tmp_path):
    """The data module hands the config's own MaskSpec and MarlinConfig to the clips: nothing rebuilt inward."""
    from marlin.train.datamodule import PretrainData

    cfg = pretrain_config(TINY_PRETRAIN, values={"mask_strategy": "frame"})
    data = PretrainData(make_items(tmp_path / "items", n=2), cfg)
    clips = data._dataset(data.train_items, 0)
    assert clips.mask is cfg.mask and clips.geometry is cfg.model
    sample = clips[0]
    assert sample["mask"].shape == (cfg.model.num_tokens,) and sample["mask"].sum() == cfg.mask.num_visible(64)
    assert sample["mask"].view(cfg.model.grid).flatten(1).any(1).sum() == cfg.mask.num_groups(64, 16)


def test_reconstruct_ratio_refused_by_the_spec(tmp_path, capsys):
    from marlin.reconstruct import clip_mask

    with pytest.raises(ValueError, match=r"mask ratio must be in \[0, 1\)"):
        clip_mask("random", (4, 4, 4), ratio=1.0)
    assert clip_mask("tube", (4, 4, 4), ratio=0.75).sum() == MaskSpec("tube", 0.75).num_visible(64)


# ---- the geometry ------------------------------------------------------------------------------------------------
def test_marlin_config_checks_its_geometry_when_made():
    with pytest.raises(ValueError, match="img_size 30 is not a multiple of patch_size 16"):
        MarlinConfig(img_size=30)
    with pytest.raises(ValueError, match="patch_size must be at least 1, got 0"):
        MarlinConfig(patch_size=0)
    assert MarlinConfig(img_size=32, patch_size=8, n_frames=8).grid == (4, 4, 4)


def test_non_divisible_img_size_refused_once_from_yaml(tmp_path, capsys):
    path = tiny_yaml(tmp_path, img_size=30)
    with pytest.raises(ConfigError, match=r"bad\.yaml: model: img_size 30 is not a multiple of patch_size 8"):
        pretrain_config(path)
    err = one_error_line(capsys, ["pretrain", "--config", path, "--data", tmp_path, "--out", tmp_path / "run"],
                         "pretrain")
    assert "bad.yaml" in err and "img_size 30 is not a multiple of patch_size 8" in err


def test_shard_geometry_refused_by_marlin_config(tmp_path, capsys):
    items = make_items(tmp_path / "items", n=1)
    err = one_error_line(capsys, ["shard", items, tmp_path / "sh", "--img-size", "30", "--patch-size", "16",
                                  "--quiet"], "shard")
    assert "img_size 30 is not a multiple of patch_size 16" in err
    assert not (tmp_path / "sh").exists()
