"""Two-process DDP on CPU (gloo) gives the same losses as one process over the same global batch."""
import copy
import os
import subprocess
import sys

import pytest
import yaml

from helpers import TINY_PRETRAIN, make_items
from marlin.train import pretrain
from marlin.train.history import read_history



@pytest.mark.parametrize("steps", [{}, {"d_steps": 2, "g_steps": 2}], ids=["one_step_each", "two_steps_each"])
def test_two_process_ddp_matches_one_process(tmp_path, steps):
    """With several critic and generator steps per iteration too: every extra step is a fresh forward and
    backward, which DDP must reduce like the first."""
    config = {**copy.deepcopy(TINY_PRETRAIN), **steps}
    data = make_items(tmp_path / "data", n=5)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "marlin.cli", "pretrain", "--config", str(cfg_path), "--data", str(data),
           "--out", str(tmp_path / "two"), "--devices", "2", "--accelerator", "cpu", "--batch-size", "2",
           "--max-steps", "3", "--log-every", "1", "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "Starting with 2 processes" in proc.stdout + proc.stderr
    one = pretrain(copy.deepcopy(config), data, tmp_path / "one", batch_size=4, max_steps=3, log_every=1,
                   progress=False, accelerator="cpu", tensorboard=False, mask_picture=False)
    two = read_history(tmp_path / "two" / "history.csv")
    rows1 = {(r["kind"], r["iteration"]): r for r in one.history}
    rows2 = {(r["kind"], r["iteration"]): r for r in two}
    assert [k for k in rows1 if k[0] == "train"] == [("train", 1), ("train", 2), ("train", 3)]
    for key in rows1:
        for term in ("rec_loss", "adv_loss", "d_loss", "lr"):
            if term in rows1[key]:
                assert abs(rows1[key][term] - rows2[key][term]) < 1e-5, (key, term, rows1[key][term],
                                                                         rows2[key][term])
    assert rows1[("train", 3)]["rec_loss"] != rows1[("train", 1)]["rec_loss"]  # the weights did change
    if steps:  # the extra generator step ran: the same run with one generator step trains differently
        plain = pretrain({**copy.deepcopy(config), "g_steps": 1}, data, tmp_path / "plain", batch_size=4, max_steps=3,
                         log_every=1, progress=False, accelerator="cpu", tensorboard=False, mask_picture=False)
        rows0 = {(r["kind"], r["iteration"]): r for r in plain.history}
        assert rows0[("train", 3)]["rec_loss"] != rows1[("train", 3)]["rec_loss"]
    assert (tmp_path / "two" / "export" / "t.encoder.pt").is_file()
