"""Two nodes x one device, launched as torchrun launches them (one agent per node, gloo on CPU): the same losses
as one process over the same global batch, and a restarted two-node run resumes exactly."""
import copy
import os
import socket
import subprocess
import sys

import yaml
from helpers import TINY_PRETRAIN, make_items

from marlin.train import pretrain
from marlin.train.history import read_history


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_nodes(cfg, data, out, *extra):
    """`torchrun --nnodes 2 --node-rank i --nproc-per-node 1 -m marlin.cli pretrain --nodes 2 --devices 1 ...`
    for i = 0, 1 at once on this machine (static rendezvous at 127.0.0.1)."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
               "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port),
               "-m", "marlin.cli", "pretrain", "--config", str(cfg), "--data", str(data), "--out", str(out),
               "--nodes", "2", "--devices", "1", "--accelerator", "cpu", "--batch-size", "2",
               "--schedule-steps", "4", "--log-every", "1", "--no-progress", *extra]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=240)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    return logs


def test_two_nodes_match_one_process_and_resume_exactly(tmp_path):
    data = make_items(tmp_path / "data", n=5)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(TINY_PRETRAIN))
    logs = _two_nodes(cfg, data, tmp_path / "two", "--max-steps", "2")
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in logs[1]  # node 1 is rank 1 of 2 (from torchrun's variables)
    ckpt = tmp_path / "two" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    _two_nodes(cfg, data, tmp_path / "two", "--max-steps", "4", "--resume", str(ckpt))
    one = pretrain(copy.deepcopy(TINY_PRETRAIN), data, tmp_path / "one", batch_size=4, max_steps=4,
                   schedule_steps=4, log_every=1, progress=False, accelerator="cpu", tensorboard=False,
                   mask_picture=False)
    a = {r["iteration"]: r for r in one.history if r["kind"] == "train"}
    b = {r["iteration"]: r for r in read_history(tmp_path / "two" / "history.csv") if r["kind"] == "train"}
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    for it in a:  # 1-2: two nodes == one process; 3-4: after the restart, still the same trajectory
        for k in ("rec_loss", "adv_loss", "d_loss", "lr"):
            assert abs(a[it][k] - b[it][k]) < 1e-5, (it, k, a[it][k], b[it][k])
    assert a[4]["rec_loss"] != a[1]["rec_loss"]
    assert (tmp_path / "two" / "export" / "t.encoder.pt").is_file()


def test_launcher_and_flags_must_agree():
    import pytest

    from marlin.errors import MarlinError
    from marlin.train.runner import check_launch

    assert check_launch(2, 8, {"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8", "RANK": "3", "GROUP_RANK": "0",
                               "LOCAL_RANK": "3"}) == "torchrun"
    assert check_launch(2, 8, {"SLURM_NTASKS": "16", "SLURM_NTASKS_PER_NODE": "8", "SLURM_JOB_NAME": "x"}) == "slurm"
    assert check_launch(1, 2, {}) == "local"
    with pytest.raises(MarlinError, match="WORLD_SIZE=8.*--nodes 2 x --devices 8"):
        check_launch(2, 8, {"WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4", "RANK": "0", "GROUP_RANK": "0",
                            "LOCAL_RANK": "0"})
    with pytest.raises(MarlinError, match="SLURM_NTASKS=2"):
        check_launch(2, 8, {"SLURM_NTASKS": "2", "SLURM_JOB_NAME": "x"})
