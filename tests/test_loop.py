"""The resumable state of the toolkit's own loops (`marlin.loop`): a run interrupted and resumed from its checkpoint
ends with exactly the weights and history of an uninterrupted one (downstream `fit`, the SyncNet loop), and a
checkpoint of another config is refused, the differing fields named."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from marlin.checkpoints import CheckpointError
from marlin.downstream.tasks import Task
from marlin.downstream.train import TrainConfig, fit
from marlin.lipsync.config import SyncTrainConfig
from marlin.lipsync.syncnet import SyncNetConfig
from marlin.loop import decode, encode, write_history

TASK = Task("t", "binary", ("neg", "pos"))


class Interrupted(Exception):
    pass


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(24, 6, generator=g)
    return x, (x[:, 0] > 0).long().numpy()


def _batches(stop_at_call: int | None = None):
    """Shuffled mini-batches of a fixed set, drawn with the loop's generator; raises at a given epoch (a crash)."""
    x, y = _data()
    calls = []

    def epoch(gen):
        calls.append(1)
        if stop_at_call is not None and len(calls) == stop_at_call:
            raise Interrupted
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 8):
            idx = order[i:i + 8]
            yield x[idx], y[idx.numpy()]
    return epoch, calls


def _evaluate(model):
    """Validation on one class only: AUC is NaN (strict JSON has no NaN), so the loss is monitored."""
    x, y = _data()
    return model(x[y == 1]), torch.ones(int(y.sum()), dtype=torch.long)


def _model(seed: int):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.3), nn.ReLU(), nn.Linear(8, 1))  # dropout: the RNG is state


CFG = TrainConfig(lr=0.3, max_epochs=7, patience=50, lr_patience=0, eval_every=2, batch_size=8, seed=3)


def test_fit_resumed_after_a_crash_ends_as_an_uninterrupted_run(tmp_path):
    full = _model(0)
    ref = fit(full, TASK, _batches()[0], _evaluate, CFG, progress=False, checkpoint=tmp_path / "full.safetensors")
    assert ref.monitor == "loss" and math.isnan(ref.history[0]["auc"])

    ck = tmp_path / "run.safetensors"
    with pytest.raises(Interrupted):  # crashes in epoch 6: the state of epoch 4 (the last evaluation) is on disk
        fit(_model(0), TASK, _batches(stop_at_call=6)[0], _evaluate, CFG, progress=False, checkpoint=ck)
    resumed, (batches, calls) = _model(99), _batches()  # other initial weights: a resume overwrites them
    res = fit(resumed, TASK, batches, _evaluate, CFG, progress=False, checkpoint=ck)
    assert len(calls) == 3  # epochs 5, 6, 7 only
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    assert (res.best_epoch, res.best_score) == (ref.best_epoch, ref.best_score)
    assert [r["epoch"] for r in res.history] == [2, 4, 6, 7]
    assert str(res.history) == str(ref.history)  # NaN AUCs included
    assert [r["lr"] for r in res.history] == [r["lr"] for r in ref.history] and res.history[-1]["lr"] < CFG.lr

    again, (batches, calls) = _model(5), _batches()  # a finished state: nothing left to train
    fit(again, TASK, batches, _evaluate, CFG, progress=False, checkpoint=ck)
    assert not calls and all(torch.equal(again.state_dict()[k], v) for k, v in full.state_dict().items())


def test_fit_refuses_a_state_of_another_config(tmp_path):
    ck = tmp_path / "run.safetensors"
    fit(_model(0), TASK, _batches()[0], _evaluate, CFG, progress=False, checkpoint=ck, identity={"fold": 1})
    other = TrainConfig(**{**CFG.to_dict(), "lr": 0.01, "betas": CFG.betas})
    with pytest.raises(CheckpointError, match=r"run\.safetensors: exists with another training config "
                                              r"\(train\.lr: checkpoint 0\.3, this run 0\.01\)"):
        fit(_model(0), TASK, _batches()[0], _evaluate, other, progress=False, checkpoint=ck, identity={"fold": 1})
    with pytest.raises(CheckpointError, match=r"fold: checkpoint 1, this run 2"):
        fit(_model(0), TASK, _batches()[0], _evaluate, CFG, progress=False, checkpoint=ck, identity={"fold": 2})


def test_fit_refuses_a_state_that_does_not_fit_the_model_in_one_line(tmp_path):
    ck = tmp_path / "run.safetensors"
    with pytest.raises(Interrupted):
        fit(_model(0), TASK, _batches(stop_at_call=4)[0], _evaluate, CFG, progress=False, checkpoint=ck)
    wider = nn.Sequential(nn.Linear(6, 9), nn.Dropout(0.3), nn.ReLU(), nn.Linear(9, 1))  # same config, other model
    with pytest.raises(CheckpointError) as e:
        fit(wider, TASK, _batches()[0], _evaluate, CFG, progress=False, checkpoint=ck)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{ck}: the saved model does not fit this run's: shape conflicts (3): "), msg


SYNC = SyncNetConfig(window=5, face_size=32, width=4, stages=3, embed_dim=16)


def test_syncnet_resumed_after_a_crash_ends_as_an_uninterrupted_run(store, tmp_path, monkeypatch):
    import marlin.lipsync.train as lt
    from marlin.lipsync.train import load_lipsync_checkpoint, train_syncnet

    train = SyncTrainConfig(steps=5, batch=4, lr=1e-3, save_every=2)
    torch.manual_seed(0)
    ref = train_syncnet(store, tmp_path / "full.pt", SYNC, train, progress=False)

    real, calls = lt.sync_loss, []

    def crash_at_step_4(*a):
        calls.append(1)
        if len(calls) == 4:
            raise Interrupted
        return real(*a)

    torch.manual_seed(0)
    monkeypatch.setattr(lt, "sync_loss", crash_at_step_4)
    with pytest.raises(Interrupted):  # the state of step 2 is on disk
        train_syncnet(store, tmp_path / "run.pt", SYNC, train, progress=False)
    torch.manual_seed(1)  # other initial weights: a resume overwrites them
    calls.clear()
    h = train_syncnet(store, tmp_path / "run.pt", SYNC, train, progress=False)
    assert len(calls) == 3 and h == ref  # steps 3..5 only, the same losses
    a, b = (load_lipsync_checkpoint(tmp_path / n, "syncnet") for n in ("full.pt", "run.pt"))
    for k, v in a["model"].items():
        assert torch.equal(b["model"][k], v), k
    assert (tmp_path / "run.history.csv").read_text() == (tmp_path / "full.history.csv").read_text()
    assert (tmp_path / "run.history.csv").read_text().startswith("step,loss\n1,")

    with pytest.raises(CheckpointError, match=r"run\.pt: exists with another SyncNet config \(embed_dim: "
                                              r"checkpoint 16, this run 32\)"):
        train_syncnet(store, tmp_path / "run.pt", SyncNetConfig(window=5, face_size=32, width=4, stages=3,
                                                                embed_dim=32), train, progress=False)


def test_meta_keeps_non_finite_numbers_and_history_files(tmp_path):
    rows = [{"a": 1.0, "b": math.nan}, {"a": -math.inf, "c": "x"}]
    back = decode(encode(rows))
    assert back[0]["a"] == 1.0 and math.isnan(back[0]["b"]) and back[1] == {"a": -math.inf, "c": "x"}
    write_history(tmp_path / "h.csv", rows)
    assert (tmp_path / "h.csv").read_text().splitlines() == ["step,a,b,c", "1,1.0,nan,", "2,-inf,,x"]
    write_history(tmp_path / "h.json", [0.5, 0.25])
    assert np.allclose([r["loss"] for r in __import__("json").loads((tmp_path / "h.json").read_text())], [0.5, 0.25])


def _draw(store, rng):
    return torch.as_tensor(rng.integers(1 << 30, size=2))


def test_lipsync_batches_depend_only_on_seed_and_step():
    """Batch i comes from (seed, i): the same stream with DataLoader workers and from a resumed step."""
    from itertools import islice

    from marlin.lipsync.data import batch_stream

    plain = [b.tolist() for b in islice(batch_stream(None, _draw, 7), 6)]
    assert [b.tolist() for b in islice(batch_stream(None, _draw, 7, workers=2), 6)] == plain
    assert [b.tolist() for b in islice(batch_stream(None, _draw, 7, start=4), 2)] == plain[4:]
