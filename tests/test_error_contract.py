"""The error contract of every `marlin` command (README, "Errors and exit codes"; issue 27), as one table.

Each row runs a command in-process (`marlin.cli.main`) on one bad input and states its exit code; a failing
command prints exactly one line ``marlin <command>: error: ...`` naming the file, no traceback, and leaves
nothing behind (or only what its documented resume rule keeps). Rows marked "defect N" are the issue's defects:
each failed on the code before its fix. A command is one block of ROWS; Ctrl-C rows run in a subprocess.
Every path holds a space and a non-ASCII letter (the unicode / space case runs in every row).
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import FIXTURES, ROOT
from helpers import TINY_PRETRAIN, make_items
from marlin.cli import main

TINY_YAML = FIXTURES / "tiny.yaml"
ENCODER = FIXTURES / "tiny.encoder.pt"
FULL = FIXTURES / "tiny.full.pt"


def _cut_video(whole: Path, cut: Path) -> int:
    """``whole`` cut at a packet boundary: the stream just ends (no decoding error) before its declared count."""
    import av

    from marlin.video import read_frames

    with av.open(str(whole)) as c:
        pos = sorted(p.pos for p in c.demux(c.streams.video[0]) if p.size)[len(read_frames(whole)) // 2]
    cut.write_bytes(whole.read_bytes()[:pos])
    return len(read_frames(cut))


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """The bad inputs, by name, under a folder whose name holds a space and a non-ASCII letter."""
    from marlin.video import write_video

    d = tmp_path_factory.mktemp("contract") / "bad files ü"
    d.mkdir()
    rng = np.random.default_rng(0)
    p = {"missing": d / "nope.mp4", "missing_pt": d / "nope.pt", "folder": d / "a folder", "empty": d / "empty.mp4",
         "text": d / "text.mp4", "file": d / "a file", "unwritable": Path("/proc/marlin out ü")}
    p["folder"].mkdir()
    p["empty"].write_bytes(b"")
    p["text"].write_text("this is not a video\n")
    p["file"].write_text("a file where a folder belongs\n")
    for ext in ("pt", "safetensors", "ckpt"):  # corrupt checkpoints: random bytes
        p[ext] = d / f"random.{ext}"
        p[ext].write_bytes(rng.bytes(4096))
    p["empty_ckpt"] = d / "empty.ckpt"
    p["empty_ckpt"].write_bytes(b"")
    p["text_ckpt"] = d / "text.ckpt"
    p["text_ckpt"].write_text("not a checkpoint\n")
    arch = yaml.safe_load(TINY_YAML.read_text())
    for name, change in (("unknown_key", ("qk_scal", 0.5)), ("wrong_type", ("img_size", "big"))):
        p[name] = d / f"{name}.yaml"
        arch2 = dict(arch)
        arch2.pop("qk_scale") if name == "unknown_key" else None
        p[name].write_text(yaml.safe_dump({**arch2, change[0]: change[1]}))
    p["binary"] = d / "binary.yaml"
    p["binary"].write_bytes(ENCODER.read_bytes()[:2048])  # a checkpoint given as a config
    frames = (rng.random((8, 32, 32, 3)) * 255).astype(np.uint8)
    whole = d / "whole.mp4"
    write_video(whole, frames, fps=25)
    p["truncated"] = d / "cut clip.mp4"
    p["truncated_frames"] = _cut_video(whole, p["truncated"])
    assert 0 < p["truncated_frames"] < 8
    p["items"] = make_items(d / "items ü", n=3, t=20, s=32)
    p["not_items"] = d / "not items"
    p["other_meta"] = p["not_items"] / "x" / "meta.json"  # another tool's meta.json
    p["other_meta"].parent.mkdir(parents=True)
    p["other_meta"].write_text('{"source": "elsewhere"}')
    p["pretrain_yaml"] = d / "tiny pretrain.yaml"
    p["pretrain_yaml"].write_text(yaml.safe_dump(TINY_PRETRAIN))
    return p


def run(capsys, argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def check_error(code, err, expected: int, command: str, names=()) -> str:
    """Exit code ``expected``, exactly one ``marlin <command>: error:`` line naming ``names``, no traceback."""
    lines = [line for line in err.splitlines() if ": error:" in line]
    assert code == expected, err
    assert len(lines) == 1 and lines[0].startswith(f"marlin {command}: error: "), err
    for name in names:
        assert str(name) in lines[0], lines[0]
    assert "Traceback" not in err and "weights_only=False" not in err, err
    return lines[0]


def snapshot(folder: Path) -> dict:
    return {str(f.relative_to(folder)): f.stat().st_mtime_ns for f in folder.rglob("*")} if folder.exists() else {}


# ---- the table: command -> rows (case, argv with {placeholders}, exit code, names the error line must hold) ----
X = ["--model", "{tiny_yaml}", "--checkpoint", "{encoder}"]  # extract with the tiny official fixture
R = ["--checkpoint", "{full}", "--model", "{tiny_yaml}", "--mask", "tube"]  # reconstruct with it
ROWS = {
    "extract": [
        ("missing input", ["extract", *X, "{missing}", "--out", "{out}"], 2, ["{missing}", "does not exist"]),
        ("folder without videos", ["extract", *X, "{folder}", "--out", "{out}"], 2, ["{folder}"]),
        ("corrupt .pt", ["extract", "--model", "{tiny_yaml}", "--checkpoint", "{pt}", "{truncated}", "--out", "{out}"],
         2, ["{pt}"]),
        ("corrupt .safetensors", ["extract", "--model", "{tiny_yaml}", "--checkpoint", "{safetensors}", "{truncated}",
                                  "--out", "{out}"], 2, ["{safetensors}"]),
        ("corrupt .ckpt", ["extract", "--model", "{tiny_yaml}", "--checkpoint", "{ckpt}", "{truncated}",
                           "--out", "{out}"], 2, ["{ckpt}"]),
        # defect 2: a misspelt key in a model YAML was ignored (exit 0, qk_scale: null recorded)
        ("yaml unknown key", ["extract", "--model", "{unknown_key}", "--checkpoint", "{encoder}", "{truncated}",
                              "--out", "{out}"], 2, ["{unknown_key}", "qk_scal", "did you mean 'qk_scale'"]),
        ("yaml wrong type", ["extract", "--model", "{wrong_type}", "--checkpoint", "{encoder}", "{truncated}",
                             "--out", "{out}"], 2, ["{wrong_type}", "img_size"]),
        # defect 8: "'utf-8' codec can't decode ..." without the file's name
        ("yaml binary", ["extract", "--model", "{binary}", "--checkpoint", "{encoder}", "{truncated}",
                         "--out", "{out}"], 2, ["{binary}"]),
        ("output is a file", ["extract", *X, "{truncated}", "--out", "{file}"], 2, ["{file}"]),
        ("output cannot be written", ["extract", *X, "{truncated}", "--out", "{unwritable}"], 2, ["{unwritable}"]),
    ],
    "preprocess": [
        ("missing input", ["preprocess", "{missing}", "{out}"], 2, ["{missing}"]),
        ("folder without videos", ["preprocess", "{folder}", "{out}"], 2, ["{folder}"]),
        ("output is a file", ["preprocess", "{truncated}", "{file}"], 2, ["{file}"]),
    ],
    "convert": [
        # defect 8: said "--model applies to checkpoint files only"
        ("missing input", ["convert", "{missing_pt}", "{out}.safetensors", "--to", "safetensors"], 2,
         ["{missing_pt}", "does not exist"]),
        ("corrupt .pt", ["convert", "{pt}", "{out}.safetensors", "--to", "safetensors", "--model", "{tiny_yaml}"], 2,
         ["{pt}"]),
        ("corrupt .safetensors", ["convert", "{safetensors}", "{out}.encoder.pt", "--to", "official"], 2,
         ["{safetensors}"]),
        ("corrupt .ckpt", ["convert", "{ckpt}", "{out}.safetensors", "--to", "safetensors", "--model", "{tiny_yaml}"],
         2, ["{ckpt}"]),
        ("yaml unknown key", ["convert", "{full}", "{out}.safetensors", "--to", "safetensors", "--model",
                              "{unknown_key}"], 2, ["{unknown_key}", "qk_scal"]),  # defect 2
        ("yaml binary", ["convert", "{full}", "{out}.safetensors", "--to", "safetensors", "--model", "{binary}"], 2,
         ["{binary}"]),  # defect 8
        ("output is a folder", ["convert", "{full}", "{folder}", "--to", "safetensors", "--model", "{tiny_yaml}"], 2,
         ["{folder}"]),
        ("output is a file", ["convert", "{full}", "{file}", "--to", "hf", "--model", "{tiny_yaml}"], 2, ["{file}"]),
        # defect 4: exit 4 (torch's / safetensors' own errors) for an unwritable output
        ("output cannot be written (.full.pt)", ["convert", "{full}", "/proc/x.full.pt", "--to", "official",
                                                  "--model", "{tiny_yaml}"], 2, ["/proc/x.full.pt"]),
        ("output cannot be written (.safetensors)", ["convert", "{full}", "/proc/x.safetensors", "--to",
                                                      "safetensors", "--model", "{tiny_yaml}"], 2,
         ["/proc/x.safetensors"]),
    ],
    "pretrain": [
        ("missing data", ["pretrain", "--config", "{pretrain_yaml}", "--data", "{missing}", "--out", "{out}"], 2,
         ["{missing}"]),
        ("data with another tool's meta.json", ["pretrain", "--config", "{pretrain_yaml}", "--data",
                                                "{not_items}", "--out", "{out}"], 2, ["{other_meta}"]),
        ("yaml unknown key", ["pretrain", "--config", "{unknown_key}", "--data", "{items}", "--out", "{out}"], 2,
         ["{unknown_key}", "did you mean"]),
        ("yaml binary", ["pretrain", "--config", "{binary}", "--data", "{items}", "--out", "{out}"], 2,
         ["{binary}"]),  # defect 8
        ("--set unknown key", ["pretrain", "--config", "{pretrain_yaml}", "--data", "{items}", "--out", "{out}",
                               "--set", "trainer.batchsize=2"], 2, ["batchsize", "did you mean"]),
        # defect 4: exit 4 and torch's advice to retry with weights_only=False
        ("--resume random bytes", ["pretrain", "--config", "{pretrain_yaml}", "--data", "{items}", "--out", "{out}",
                                   "--resume", "{ckpt}"], 2, ["{ckpt}"]),
        ("--resume empty file", ["pretrain", "--config", "{pretrain_yaml}", "--data", "{items}", "--out", "{out}",
                                 "--resume", "{empty_ckpt}"], 2, ["{empty_ckpt}"]),
        ("--resume text file", ["pretrain", "--config", "{pretrain_yaml}", "--data", "{items}", "--out", "{out}",
                                "--resume", "{text_ckpt}"], 2, ["{text_ckpt}"]),
        ("output is a file", ["pretrain", "--config", "{pretrain_yaml}", "--data", "{items}", "--out", "{file}"], 2,
         ["{file}"]),
        ("--resume a model checkpoint", ["pretrain", "--config", "{pretrain_yaml}", "--data", "{items}", "--out",
                                         "{out}", "--resume", "{encoder}"], 2, ["{encoder}", "--init"]),
    ],
    "synth": [
        # defect 6: fps 0 / -5 / nan were recorded in synth.json, every item then failed
        ("--fps 0", ["synth", "{out}", "--num", "1", "--fps", "0"], 2, ["{out}", "fps"]),
        ("--fps -5", ["synth", "{out}", "--num", "1", "--fps", "-5"], 2, ["{out}", "fps"]),
        ("--fps nan", ["synth", "{out}", "--num", "1", "--fps", "nan"], 2, ["{out}", "fps"]),
        ("output is a file", ["synth", "{file}", "--num", "1"], 2, ["{file}"]),
    ],
    "shard": [
        ("missing data", ["shard", "{missing}", "{out}"], 2, ["{missing}"]),
        ("--set unknown key", ["shard", "{items}", "{out}", "--set", "shard_sise=1MB"], 2, ["shard_sise"]),
        ("config binary", ["shard", "{items}", "{out}", "--config", "{binary}"], 2, ["{binary}"]),  # defect 8
        ("config unknown key", ["shard", "{items}", "{out}", "--config", "{unknown_key}"], 2, ["{unknown_key}"]),
        ("output is a file", ["shard", "{items}", "{file}"], 2, ["{file}"]),
    ],
    "probe": [
        ("missing config", ["probe", "{missing}", "--out", "{out}"], 2, ["{missing}"]),
        ("config binary", ["probe", "{binary}", "--out", "{out}"], 2, ["{binary}"]),  # defect 8
        ("--set unknown key", ["probe", "items_lp", "--root", "{items}", "--out", "{out}", "--set", "trian.lr=1"], 2,
         ["trian"]),
        # defect 9: these left OUT/config.yaml behind
        ("missing data root", ["probe", "items_lp", "--root", "{missing}", "--weights", "random", "--out", "{out}"],
         2, ["{missing}"]),
        ("missing weights", ["probe", "items_lp", "--root", "{items}", "--weights", "{missing_pt}", "--out",
                             "{out}"], 2, ["{missing_pt}"]),
    ],
    "finetune": [
        ("missing config", ["finetune", "{missing}", "--out", "{out}"], 2, ["{missing}"]),
        ("--set unknown key", ["finetune", "items_ft", "--root", "{items}", "--out", "{out}", "--set", "trian.lr=1"],
         2, ["trian"]),
        # defect 4: exit 4 for a GPU this machine lacks, or a device torch does not know
        ("--device cuda:7", ["finetune", "items_ft", "--root", "{items}", "--out", "{out}", "--device", "cuda:7"], 2,
         ["cuda:7"]),
        ("--device bogus", ["finetune", "items_ft", "--root", "{items}", "--out", "{out}", "--device", "bogus"], 2,
         ["bogus"]),
        ("batch_size_eval 0", ["finetune", "items_ft", "--root", "{items}", "--out", "{out}", "--set",
                               "batch_size_eval=0"], 2, ["batch_size_eval"]),
        ("missing data root", ["finetune", "items_ft", "--root", "{missing}", "--weights", "random", "--out",
                               "{out}"], 2, ["{missing}"]),  # defect 9
    ],
    "evaluate": [
        ("missing checkpoint", ["evaluate", "{missing_pt}", "--out", "{out}"], 2, ["{missing_pt}"]),
        ("corrupt checkpoint", ["evaluate", "{safetensors}", "--out", "{out}"], 2, ["{safetensors}"]),
    ],
    "gradcam": [
        ("missing checkpoint", ["gradcam", "{missing_pt}", "{truncated}", "--out", "{out}"], 2, ["{missing_pt}"]),
        ("corrupt checkpoint", ["gradcam", "{safetensors}", "{truncated}", "--out", "{out}"], 2, ["{safetensors}"]),
    ],
    "predict": [
        ("missing run", ["predict", "{truncated}", "--run", "{missing}", "--out", "{out}"], 2, ["{missing}"]),
        ("missing input", ["predict", "{missing}", "--run", "{folder}", "--out", "{out}"], 2, ["{missing}"]),
    ],
    "reconstruct": [  # --mask tube: a plain video has no parse maps for Fasking
        ("missing input", ["reconstruct", "{missing}", *R, "--out", "{out}"], 2, ["{missing}"]),
        ("corrupt .pt", ["reconstruct", "{truncated}", "--checkpoint", "{pt}", "--model", "{tiny_yaml}", "--mask",
                         "tube", "--out", "{out}"], 2, ["{pt}"]),
        ("corrupt .safetensors", ["reconstruct", "{truncated}", "--checkpoint", "{safetensors}", "--mask", "tube",
                                  "--out", "{out}"], 2, ["{safetensors}"]),
        ("yaml unknown key", ["reconstruct", "{truncated}", "--checkpoint", "{full}", "--model", "{unknown_key}",
                              "--mask", "tube", "--out", "{out}"], 2, ["{unknown_key}", "qk_scal"]),
        ("yaml binary", ["reconstruct", "{truncated}", "--checkpoint", "{full}", "--model", "{binary}",
                         "--mask", "tube", "--out", "{out}"], 2, ["{binary}"]),
        ("output is a file", ["reconstruct", "{truncated}", *R, "--out", "{file}"], 2, ["{file}"]),
    ],
    "lipsync infer": [
        ("missing checkpoint", ["lipsync", "infer", "--checkpoint", "{missing_pt}", "--face", "{truncated}",
                                "--audio", "{truncated}", "--out", "{out}.mp4"], 2, ["{missing_pt}"]),
        ("corrupt checkpoint", ["lipsync", "infer", "--checkpoint", "{pt}", "--face", "{truncated}",
                                "--audio", "{truncated}", "--out", "{out}.mp4"], 2, ["{pt}"]),
        # read as a string when training began (after the data) before marlin.devices.resolve_device
        ("--device bogus", ["lipsync", "infer", "--checkpoint", "{pt}", "--face", "{truncated}", "--audio",
                            "{truncated}", "--out", "{out}.mp4", "--device", "bogus"], 2, ["--device bogus"]),
    ],
    "lipsync train-syncnet": [
        ("missing data", ["lipsync", "train-syncnet", "--data", "{missing}", "--out", "{out}.pt"], 2, ["{missing}"]),
        ("yaml unknown key", ["lipsync", "train-syncnet", "--config", "{unknown_key}", "--data", "{folder}", "--out",
                              "{out}.pt"], 2, ["{unknown_key}"]),
    ],
    "lipsync evaluate": [
        ("corrupt syncnet", ["lipsync", "evaluate", "--syncnet", "{pt}", "--videos", "{truncated}", "--out",
                             "{out}"], 2, ["{pt}"]),
        ("missing video list", ["lipsync", "evaluate", "--syncnet", "{pt}", "--videos", "{missing}", "--out",
                                "{out}"], 2, ["{missing}"]),
    ],
    "lipsync train": [
        ("config binary", ["lipsync", "train", "--config", "{binary}", "--data", "{folder}", "--out", "{out}.pt"], 2,
         ["{binary}"]),
        ("--set unknown key", ["lipsync", "train", "--data", "{folder}", "--out", "{out}.pt", "--set",
                               "training.stpes=1"], 2, ["stpes"]),
    ],
    "demo": [
        # defect 8: a bad config failed only after the synthetic worlds were drawn, --size 96 after pretraining
        ("config unknown key", ["demo", "--config", "{unknown_key}", "--out", "{out}"], 2, ["{unknown_key}"]),
        ("--size not the config's", ["demo", "--size", "96", "--out", "{out}"], 2, ["96", "img_size"]),
        ("--set unknown key", ["demo", "--set", "overrides.batchsize=2", "--out", "{out}"], 2, ["batchsize"]),
    ],
    "ablate": [
        # defect 8: a bad --downstream file failed after pretraining, without its name
        ("--downstream binary", ["ablate", "ratio", "--downstream", "{binary}", "--out", "{out}"], 2, ["{binary}"]),
        ("--downstream missing", ["ablate", "ratio", "--downstream", "{missing}", "--out", "{out}"], 2,
         ["{missing}"]),
        ("--jobs 0", ["ablate", "ratio", "--jobs", "0", "--out", "{out}"], 2, ["jobs"]),
    ],
}
CASES = [(command, *row) for command, rows in ROWS.items() for row in rows]


@pytest.mark.parametrize("command,case,argv,code,names", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_bad_input(bad, tmp_path, capsys, command, case, argv, code, names):
    out = tmp_path / "out ü"
    values = {**{k: str(v) for k, v in bad.items()}, "out": str(out), "tiny_yaml": str(TINY_YAML),
              "encoder": str(ENCODER), "full": str(FULL)}
    before = snapshot(bad["items"].parent)
    got, _, err = run(capsys, [a.format(**values) for a in argv])
    check_error(got, err, code, command, [n.format(**values) for n in names])
    # nothing partial: no output folder or file of the failed run, the inputs untouched
    assert not any(out.parent.glob(f"{out.name}*")), sorted(out.parent.iterdir())
    assert snapshot(bad["items"].parent) == before


def test_every_command_has_rows():
    """A new command gets its rows here."""
    from marlin.cli import COMMANDS

    assert set(COMMANDS) == {c.split()[0] for c in ROWS}


def test_extract_reports_lists_and_skips_bad_videos(bad, tmp_path, capsys):
    """A batch with an empty file, a text file and a truncated video: each reported and listed in failed.txt, the
    good video written, exit 1; no traceback."""
    import shutil

    good = tmp_path / "in ü" / "good clip.mp4"
    good.parent.mkdir()
    shutil.copy(FIXTURES / "cropped01.mp4", good)
    for name in ("empty", "text", "truncated"):
        shutil.copy(bad[name], good.parent / Path(bad[name]).name)
    out = tmp_path / "out ü"
    code, _, err = run(capsys, ["extract", *[a.format(tiny_yaml=TINY_YAML, encoder=ENCODER) for a in X],
                                good.parent, "--out", out, "--reduction", "mean"])
    assert code == 1 and "Traceback" not in err
    failed = (out / "failed.txt").read_text()
    for name in ("empty.mp4", "text.mp4", "cut clip.mp4"):
        assert name in failed and name in err
    assert sorted(p.name for p in out.glob("*.npy")) == ["good clip.npy"]


# ---- defects that need more than one bad argument ------------------------------------------------------------
def test_pretrain_refuses_to_overwrite_a_run_without_resume_or_overwrite(bad, tmp_path, capsys):
    """defect 1: a rerun without --resume silently started over and overwrote last.ckpt."""
    out = tmp_path / "run ü"
    last = out / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"a previous run's checkpoint")
    code, _, err = run(capsys, ["pretrain", "--config", bad["pretrain_yaml"], "--data", bad["items"], "--out", out])
    line = check_error(code, err, 2, "pretrain", [last, "--resume", "--overwrite"])
    assert "--overwrite" in line and last.read_bytes() == b"a previous run's checkpoint"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]  # no config.yaml, history or logs written


def _sigint_as_a_terminal_sends_it():
    """For a child's preexec_fn: SIGINT back to its default action, so the child's Python turns it into
    KeyboardInterrupt. A test run started as a background job (nohup, a non-interactive shell's `&`) ignores
    SIGINT, and a child would inherit that and never see the Ctrl-C the test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_pretrain_ctrl_c_exits_130(bad, tmp_path):
    """defect 1: Ctrl-C during training exited 1 without a message (Lightning's handler calls sys.exit(1))."""
    out = tmp_path / "run ü"
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "marlin.cli", "pretrain", "--config", str(bad["pretrain_yaml"]),
                             "--data", str(bad["items"]), "--out", str(out), "--no-progress",
                             "--set", "trainer.max_steps=1000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            preexec_fn=_sigint_as_a_terminal_sends_it)
    try:
        deadline = time.monotonic() + 120
        while not (out / "history.csv").exists() or (out / "history.csv").stat().st_size == 0:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        time.sleep(0.5)  # inside the training loop
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    check_error(proc.returncode, err, 130, "pretrain", ["interrupted"])


def test_synth_ctrl_c_exits_130_and_resumes(tmp_path):
    """Ctrl-C during a long `marlin synth`: exit 130, one line; only whole items and no temporaries are left, and a
    rerun keeps them (the documented resume rule)."""
    out = tmp_path / "world ü"
    argv = [sys.executable, "-m", "marlin.cli", "synth", str(out), "--num", "500", "--frames", "8", "--size", "64",
            "--no-progress"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=_sigint_as_a_terminal_sends_it)
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("*/meta.json"))) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    check_error(proc.returncode, err, 130, "synth", ["interrupted"])
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no half-written item
    kept = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/meta.json")}
    assert 2 <= len(kept) < 500
    first = sorted(kept)[:2]
    assert main(["synth", str(out), "--num", "2", "--frames", "8", "--size", "64", "--no-progress"]) == 0
    assert {n: (out / n / "meta.json").stat().st_mtime_ns for n in first} == {n: kept[n] for n in first}  # kept


def test_truncated_video_is_refused_by_fine_tuning_and_lipsync(bad):
    """defect 3: fine-tuning padded short reads (downstream.sources), `lipsync infer` / training used the frames
    that decode; extract, probe and gradcam refuse them."""
    from marlin.downstream.sources import random_clip
    from marlin.lipsync.data import read_faces
    from marlin.video import TruncatedVideoError

    n = bad["truncated_frames"]
    with pytest.raises(TruncatedVideoError, match=f"after {n} frames although the container declares 8") as e:
        random_clip(bad["truncated"], 8, 32, np.random.default_rng(0), sample_rate=1)
    assert str(bad["truncated"]) in str(e.value)
    with pytest.raises(TruncatedVideoError, match=f"after {n} frames although the container declares 8"):
        read_faces(bad["truncated"], 32)


def test_lipsync_training_is_seeded_and_evaluate_exits_1_on_failed_inputs(tmp_path, capsys):
    """defect 5: train-syncnet left its initial weights unseeded (step-1 losses 0.876 and 0.754)."""
    import torch

    assert main(["lipsync", "toy", str(tmp_path / "lrs2 ü"), "--speakers", "2", "--per-speaker", "1", "--frames",
                 "30"]) == 0
    losses = []
    for k in range(2):
        torch.manual_seed(100 + k)  # the global generator differs between the runs
        out = tmp_path / f"sync {k}.pt"
        assert main(["lipsync", "train-syncnet", "--data", str(tmp_path / "lrs2 ü"), "--out", str(out),
                     "--face-size", "32", "--width", "8", "--stages", "3", "--embed-dim", "16", "--steps", "1",
                     "--batch", "2", "--no-progress"]) == 0
        losses.append(capsys.readouterr().out.split(" steps ")[1])  # "loss: first 1 steps 0.6931 -> ..."
    assert losses[0] == losses[1]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "sync 0.pt").stat().st_mode & 0o777 == 0o666 & ~umask  # defect 9: was 0600

    # defect 7: `lipsync evaluate` exited 0 although inputs failed
    broken = tmp_path / "broken ü.mp4"
    broken.write_text("not a video")
    good = sorted((tmp_path / "lrs2 ü" / "main").rglob("*.mp4"))[0]
    code = main(["lipsync", "evaluate", "--syncnet", str(tmp_path / "sync 0.pt"), "--videos", str(good), str(broken),
                 "--out", str(tmp_path / "ev"), "--vshift", "2"])
    captured = capsys.readouterr()
    assert code == 1 and str(broken) in captured.err and "LSE-D" in captured.out
    assert "Traceback" not in captured.err


def test_outputs_follow_the_umask(tmp_path, capsys):
    """defect 9: .safetensors outputs (and lip-sync checkpoints, written the same way) were 0600."""
    old = os.umask(0o022)
    try:
        out = tmp_path / "model ü.safetensors"
        assert main(["convert", str(FULL), str(out), "--to", "safetensors", "--model", str(TINY_YAML)]) == 0
        from marlin.atomic import write_json

        write_json(tmp_path / "x.json", {})
    finally:
        os.umask(old)
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)
    assert oct((tmp_path / "x.json").stat().st_mode & 0o777) == oct(0o644)
    capsys.readouterr()


def test_set_help_examples_are_real_keys():
    """defect 8: the help of demo, ablate and shard showed `--set trainer.batch_size=8`, an unknown key there."""
    import argparse
    import importlib
    import re

    from marlin.apps.ablate import AblateSettings
    from marlin.cli import COMMANDS
    from marlin.config import load
    from marlin.data.shards import ShardSettings
    from marlin.apps.demo import DemoSettings
    from marlin.train import pretrain_config

    for name, settings in (("demo", DemoSettings), ("ablate", AblateSettings), ("shard", ShardSettings),
                           ("pretrain", None)):
        parser = argparse.ArgumentParser(prog=f"marlin {name}")
        importlib.import_module(COMMANDS[name][0]).add_arguments(parser)
        example = re.search(r"e\.g\. --set (\S+)", " ".join(parser.format_help().split())).group(1)
        if settings is None:
            pretrain_config("tiny_cpu", overrides=[example])
        else:
            load(settings, None, [example])  # raises ConfigError for an unknown key


def test_quiet_keeps_lightning_info_off_stderr(tmp_path, capfd):
    """defect 9: Lightning's INFO lines ("GPU available ...") reached stderr under `marlin demo --quiet`."""
    import logging

    import lightning.pytorch as pl

    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    try:
        assert main(["demo", "--quiet", "--size", "96", "--out", str(tmp_path / "demo")]) == 2  # stops early
        capfd.readouterr()
        pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False)
        err = capfd.readouterr().err
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    assert "GPU available" not in err and "Tip" not in err, err


def test_face_models_keep_litert_info_off_stderr():
    """defect 9: LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." reached stderr (`marlin
    preprocess --quiet` too); it is printed once per process, hence a fresh one."""
    code = ("import numpy as np; from marlin.face.models import TFLiteModel; m = TFLiteModel('face_detection'); "
            "m(np.zeros(m.input_shape[1:], np.float32)); print('ran')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ran", done.stderr
    assert "XNNPACK" not in done.stderr and "INFO" not in done.stderr, done.stderr
