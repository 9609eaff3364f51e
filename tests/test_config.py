"""The configuration layer: typed sections, unknown keys, overrides, generated flags, the official YAML table."""
import argparse
from dataclasses import dataclass, field

import pytest
import yaml

from marlin import config as C
from marlin.config import ConfigError
from marlin.train import PretrainConfig, pretrain_config
from marlin.train.config import CONFIG_DIR


@dataclass
class Inner:
    rate: int = 2
    names: list[str] = field(default_factory=list)


@dataclass
class Outer:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    flag: bool = False
    path: str | None = None
    inner: Inner = field(default_factory=Inner)


def test_types_are_converted_and_defaults_filled():
    cfg = C.from_dict(Outer, {"lr": "1e-3", "betas": [0.1, 0.2], "inner": {"rate": 4}})
    assert cfg.lr == 1e-3 and cfg.betas == (0.1, 0.2) and cfg.inner == Inner(4, [])
    assert C.from_dict(Outer, C.to_dict(cfg)) == cfg


@pytest.mark.parametrize("data, message", [
    ({"lrr": 1}, "unknown key 'lrr' (did you mean 'lr'?)"),
    ({"inner": {"rat": 1}}, "inner: unknown key 'rat' (did you mean 'rate'?)"),
    ({"inner": {"rate": 1.5}}, "expected a whole number"),
    ({"flag": "yes"}, "expected true or false"),
    ({"betas": [1, 2, 3]}, "expected 2 values"),
    ({"inner": 3}, "expected a section"),
])
def test_bad_keys_and_values_name_the_source(data, message):
    with pytest.raises(ConfigError, match="^run.yaml: ") as e:
        C.from_dict(Outer, data, "run.yaml")
    assert message in str(e.value)


def test_overrides_apply_on_top_of_a_file(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("lr: 0.5\ninner: {rate: 3}\n")
    cfg = C.load(Outer, p, ["inner.rate=7", "path=null"], {"inner.names": ["a"]})
    assert (cfg.lr, cfg.inner.rate, cfg.inner.names, cfg.path) == (0.5, 7, ["a"], None)
    with pytest.raises(ConfigError, match="unknown key 'rte'"):
        C.load(Outer, p, ["inner.rte=7"])


def test_generated_flags_set_only_what_was_given():
    parser = argparse.ArgumentParser()
    C.add_arguments(parser, Outer)
    args = parser.parse_args(["--lr", "0.25", "--inner-rate", "5", "--flag", "--set", "path=x"])
    assert C.values_from_args(args) == {"lr": 0.25, "inner.rate": 5, "flag": True}
    cfg = C.load(Outer, None, args.set, C.values_from_args(args))
    assert (cfg.lr, cfg.inner.rate, cfg.flag, cfg.path, cfg.betas) == (0.25, 5, True, "x", (0.5, 0.9))
    with pytest.raises(SystemExit):
        parser.parse_args(["--inner-rate", "x"])


@pytest.mark.parametrize("name", ["marlin_vit_base", "tiny_cpu", "demo_cpu"])
def test_official_layout_round_trips_through_the_one_table(name):
    original = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    cfg = pretrain_config(name)
    written = cfg.to_official()
    original.pop("feature_dir", None)
    original.setdefault("trainer", {})
    assert {k: v for k, v in written.items() if k != "trainer"} == {k: v for k, v in original.items()
                                                                     if k != "trainer"}
    assert pretrain_config(written) == cfg
    assert pretrain_config(cfg.to_dict()) == cfg  # our own nested layout reads back too


def test_unknown_official_key_is_an_error_with_a_suggestion(tmp_path):
    data = yaml.safe_load((CONFIG_DIR / "tiny_cpu.yaml").read_text())
    data["mask_percentage_targt"] = 0.5
    with pytest.raises(ConfigError, match="did you mean 'mask_percentage_target'"):
        pretrain_config(data)
    data = yaml.safe_load((CONFIG_DIR / "tiny_cpu.yaml").read_text())
    data["trainer"]["batch_sise"] = 2
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        pretrain_config(data)


def test_pretrain_command_line_flags_reach_the_config():
    from marlin.cli import pretrain as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--config", "tiny_cpu", "--data", "d", "--mask-ratio", "0.75", "--batch-size", "4",
                              "--mask-strategy", "tube", "--no-adv-loss", "--set", "trainer.seed=3",
                              "--set", "model.encoder_depth=2"])
    cfg = pretrain_config(args.config, overrides=args.set, values=C.values_from_args(args))
    assert (cfg.mask_ratio, cfg.trainer.batch_size, cfg.mask_strategy, cfg.adv_loss, cfg.trainer.seed) == \
        (0.75, 4, "tube", False, 3)
    assert cfg.model.encoder_depth == 2 and cfg.trainer.num_workers == 1  # the rest from tiny_cpu.yaml
    with pytest.raises(SystemExit):  # choices come from the masking registry
        parser.parse_args(["--config", "tiny_cpu", "--data", "d", "--mask-strategy", "checkerboard"])


def test_save_resolved_writes_what_load_reads(tmp_path):
    cfg = pretrain_config("tiny_cpu", values={"mask_ratio": 0.8})
    path = C.save_resolved(cfg, tmp_path)
    assert path == tmp_path / "config.yaml"
    assert pretrain_config(path) == cfg
    assert isinstance(pretrain_config(path), PretrainConfig)
