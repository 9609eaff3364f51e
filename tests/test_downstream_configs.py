"""Every shipped run config loads, names a known dataset / task, and has valid training options."""
import pytest

from marlin.config import ConfigError
from marlin.downstream.config import EncoderSpec, RunConfig, load_run_config, shipped_configs
from marlin.downstream.datasets import DATASETS
from marlin.downstream.fewshot import parse_fraction
from marlin.downstream.train import TrainConfig

TASKS = {"celebvhq": {"appearance", "action", "emotion"}, "mosei": {"emotion", "sentiment7", "sentiment2"},
         "ffpp": {"real_fake", "method"}, "dfew": {"expression"}, "ferv39k": {"expression"},
         "mafw": {"expression"}, "csv": {None}, "items": {"expression"}}


def test_every_dataset_and_mode_is_shipped():
    names = shipped_configs()
    for ds in DATASETS:
        assert any(n.startswith(ds) and n.endswith("_lp") for n in names), ds
        assert any(n.startswith(ds) and n.endswith("_ft") for n in names), ds


@pytest.mark.parametrize("name", shipped_configs())
def test_shipped_config_is_valid(name):
    cfg = load_run_config(name)
    assert isinstance(cfg, RunConfig)
    assert cfg.dataset in DATASETS and cfg.task in TASKS[cfg.dataset]
    tc = TrainConfig.from_dict(cfg.train)
    assert tc.betas == (0.5, 0.9) and tc.lr == 1e-4 and tc.weight_decay == 0  # the paper's optimiser
    assert all(0 < parse_fraction(f) <= 1 for f in cfg.few_shot)
    assert cfg.reduction in ("mean", "max")
    assert cfg.features is None  # the documented default <out>/features, keyed by the encoder inside


def test_overrides_and_unknown_keys():
    cfg = load_run_config("dfew_lp", ["train.lr=0.001", "folds=[1, 2]", "root=/data/dfew", "few_shot=['10%']"])
    assert cfg.train["lr"] == 0.001 and cfg.folds == [1, 2] and cfg.root == "/data/dfew" and cfg.few_shot == [0.1]
    with pytest.raises(ValueError, match="KEY=VALUE"):
        load_run_config("dfew_lp", ["train.lr"])
    with pytest.raises(ConfigError, match="unknown key 'lr'"):
        load_run_config({"dataset": "csv", "root": "x", "lr": 1})
    with pytest.raises(ConfigError, match=r"windows: unknown key 'strde' \(did you mean 'stride'\?\)"):
        load_run_config("dfew_lp", ["windows.strde=4"])
    with pytest.raises(ConfigError, match="train: unknown key 'lrr' \\(did you mean 'lr'\\?\\)"):
        load_run_config("dfew_lp", ["train.lrr=1"])
    with pytest.raises(ConfigError, match="solver must be one of"):
        load_run_config("dfew_lp", ["solver=newton"])
    with pytest.raises(ConfigError, match="batch_size_eval must be at least 1, got 0"):
        load_run_config("dfew_lp", ["batch_size_eval=0"])
    assert load_run_config("dfew_lp").batch_size_eval is None  # clips per call follow the device
    with pytest.raises(FileNotFoundError, match="shipped config"):
        load_run_config("no_such_config")


def test_cli_values_fill_required_keys_and_stay_strings(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("dataset: csv\n")
    with pytest.raises(ValueError, match="'root' is required"):
        load_run_config(str(p))
    cfg = load_run_config(str(p), values={"root": "2023", "encoder.weights": "w.pt"})
    assert cfg.root == "2023" and cfg.encoder == EncoderSpec("marlin_vit_base_ytf", "w.pt")
