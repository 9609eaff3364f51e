"""docs/reproduce.md runs as written: its bash blocks are parsed line by line and every downstream command runs
on tiny fabricated datasets in the documented layouts (face videos from the shared samples), with the released
weights replaced by a tiny encoder in the official file format; lip-sync commands are checked against the
command-line parser (training a Wav2Lip is too slow for a test)."""
import argparse
import json
import os
import re
import shlex
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import FIXTURES, ROOT, SAMPLES
from marlin.cli import main
from marlin.video import read_frames, write_video

RELEASE = "https://github.com/ControlNet/MARLIN/releases/download/model_v1/"
PRESETS = ("marlin_vit_small_ytf", "marlin_vit_base_ytf", "marlin_vit_large_ytf")


def bash_blocks(text: str) -> list[list[str]]:
    """The commands of each ```bash block: comments dropped, continuation lines joined."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines, current = [], ""
        for raw in block.splitlines():
            line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
            current += line
            if current.endswith("\\"):
                current = current[:-1] + " "
                continue
            if current.strip():
                lines.append(current.strip())
            current = ""
        out.append(lines)
    return out


def _expand(line: str, env: dict) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), f"x{m.group(1).lower()}"), line)


def _face_video(path: Path, frames: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, frames, fps=6)


def _fabricate(frames: np.ndarray, rng: np.random.Generator) -> None:
    """Tiny raw downloads of CelebV-HQ, CMU-MOSEI and FaceForensics++ (c40) below ./data."""
    import h5py

    celeb = Path("data/CelebV-HQ")
    ids = [f"clip{i:02d}" for i in range(10)]
    for cid in ids:
        _face_video(celeb / "downloaded" / f"{cid}.mp4", frames)
    clips = {cid: {"attributes": {"appearance": rng.integers(0, 2, 40).tolist(),
                                  "action": rng.integers(0, 2, 35).tolist(),
                                  "emotion": {"sep_flag": False, "labels": "neutral"}}} for cid in ids}
    meta = {"appearance_mapping": [f"app{i}" for i in range(40)], "action_mapping": [f"act{i}" for i in range(35)],
            "emotion_mapping": ["neutral", "happy"]}
    (celeb / "celebvhq_info.json").write_text(json.dumps({"meta_info": meta, "clips": clips}))

    mosei = Path("data/CMU-MOSEI")
    with h5py.File(_mkparent(mosei / "CMU_MOSEI_Labels.csd"), "w") as f:
        data = f.create_group("All Labels").create_group("data")
        for i in range(5):
            vid = f"vid{i:02d}"
            _face_video(mosei / "Raw/Videos/Full/Combined" / f"{vid}.mp4", frames)
            g = data.create_group(vid)
            feats = np.concatenate([rng.choice([-3, -1.3333, 0, 0.6667, 2.3333], (2, 1)),
                                    rng.choice([0, 0.3333, 1], (2, 6))], 1)
            g.create_dataset("features", data=feats.astype(np.float32))
            g.create_dataset("intervals", data=np.array([[0.0, 0.7], [0.6, 1.3]]))

    ffpp = Path("data/FaceForensics++")
    pairs = {"train": [["000", "001"]], "val": [["002", "003"]], "test": [["004", "005"]]}
    for split, ps in pairs.items():
        (_mkparent(ffpp / "splits" / f"{split}.json")).write_text(json.dumps(ps))
        for a, b in ps:
            for v in (a, b):
                _face_video(ffpp / "original_sequences/youtube/c40/videos" / f"{v}.mp4", frames)
            for m in ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"):
                for x, y in ((a, b), (b, a)):
                    _face_video(ffpp / "manipulated_sequences" / m / "c40/videos" / f"{x}_{y}.mp4", frames)


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _tiny_encoder(folder: Path) -> tuple[Path, Path]:
    """A random encoder of 4 frames, 224 px at 32 px patches (98 tokens), as an official YAML + .encoder.pt."""
    import torch

    from marlin.models import Marlin

    text = (FIXTURES / "tiny.yaml").read_text()
    for key, value in (("patch_size", 32), ("clip_frames", 4), ("embed_dim", 32), ("depth", 1), ("num_heads", 2)):
        text = re.sub(rf"(\b{key}: )\S+", rf"\g<1>{value}", text)
    yaml_path, weights = folder / "tiny.yaml", folder / "tiny.encoder.pt"
    yaml_path.write_text(text)
    torch.manual_seed(0)
    Marlin.from_config(yaml_path, full_model=False).export_official(weights)
    return yaml_path, weights


def _lipsync_parser() -> argparse.ArgumentParser:
    from marlin.cli import lipsync

    parser = argparse.ArgumentParser(prog="marlin lipsync")
    lipsync.add_arguments(parser)
    return parser


def _strict_json(path: Path):
    def refuse(const):
        raise ValueError(f"{path}: non-standard JSON constant {const}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_reproduce_commands_run_as_written(tmp_path, monkeypatch):
    blocks = bash_blocks((ROOT / "docs" / "reproduce.md").read_text())
    assert blocks, "docs/reproduce.md has no bash blocks"
    monkeypatch.chdir(tmp_path)
    frames = read_frames(SAMPLES / "video01.mp4", range(0, 16, 2))  # a face, 8 frames
    _fabricate(np.stack([cv2.resize(f, (120, 90)) for f in frames]), np.random.default_rng(0))
    tiny_yaml, tiny_weights = _tiny_encoder(tmp_path)
    env, ran, parsed, outs = {}, [], [], []
    lipsync = _lipsync_parser()
    for block in blocks:
        parse_only = any(line.startswith("marlin lipsync") for line in block)  # the LRS2 section
        for line in block:
            line = _expand(line, env)
            if re.fullmatch(r"[A-Z_]+=\S+", line):
                key, value = line.split("=", 1)
                env[key] = value
                continue
            if line.startswith(("while ", "done")):  # a loop over the LRS2 test pairs: its body is checked
                continue
            args = shlex.split(line)
            if args[:2] == ["mkdir", "-p"]:
                for d in args[2:]:
                    os.makedirs(d, exist_ok=True)
            elif args[0] == "curl":  # a released encoder: the tiny one, in the same (official) file format
                dest, url = args[args.index("-o") + 1], args[-1]
                assert url == RELEASE + Path(dest).name and Path(dest).stem.removesuffix(".encoder") in PRESETS
                shutil.copy(tiny_weights, dest)
            elif args[0] == "marlin" and (parse_only or args[1] == "lipsync"):
                assert args[1] in ("lipsync", "preprocess"), line
                if args[1] == "lipsync":
                    lipsync.parse_args(args[2:])  # exits (fails the test) on an unknown option
                parsed.append(line)
            elif args[0] == "marlin":
                if "--model" in args:  # the tiny encoder's architecture instead of the preset
                    i = args.index("--model") + 1
                    assert args[i] in PRESETS
                    args[i] = str(tiny_yaml)
                extra = ["--quiet"] if args[1] == "preprocess" else \
                    ["--no-progress", "--set", "train.max_epochs=1"] if args[1] in ("probe", "finetune") else []
                assert main(args[1:] + extra) == 0, line
                ran.append(line)
                if "--out" in args:
                    outs.append(Path(args[args.index("--out") + 1]))
            else:
                pytest.fail(f"docs/reproduce.md: a command this test does not know how to check: {line}")
    assert env.get("MODEL") in PRESETS
    commands = [shlex.split(c)[1] + " " + shlex.split(c)[2] for c in ran if shlex.split(c)[1] != "preprocess"]
    for config in ("celebvhq_appearance_lp", "celebvhq_action_lp", "celebvhq_appearance_ft", "celebvhq_action_ft",
                   "celebvhq_appearance_fewshot_lp", "mosei_emotion_lp", "mosei_sentiment7_lp",
                   "mosei_sentiment2_lp", "mosei_emotion_ft", "mosei_sentiment7_ft", "mosei_sentiment2_ft",
                   "ffpp_c40_lp", "ffpp_c40_ft"):
        assert any(c.endswith(" " + config) for c in commands), f"no command runs {config}"
    assert sum(c.startswith("marlin lipsync evaluate") for c in parsed) == 2  # the Wav2Lip and MARLIN rows
    for out in outs:
        data = _strict_json(out / "metrics.json")
        assert (out / "results.md").is_file() and data["runs"], out
        assert not list(out.glob("skipped_*")), out  # every sample and video was found and read
        if data["task"]["kind"] == "multilabel":
            assert "auc_label_mean" in data["runs"][0]["test"]
            assert "AUC (label mean)" in (out / "results.md").read_text()
    fewshot = _strict_json(Path(f"runs/celebvhq_appearance_fewshot_lp/{env['MODEL']}/metrics.json"))
    assert [s["few_shot"] for s in fewshot["summary"]] == [1.0, 0.5, 0.1, 0.01]
    assert all(s["runs"] == 3 for s in fewshot["summary"])


def _paper_rows(text: str):
    """(table, row, {column: quoted text}) for each row of the page's tables headed 'paper row' (code blocks,
    which show results.md, left out) whose first cell names a cell 'Table N: row'."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    for table in re.findall(r"((?:^\|.*\|\n)+)", text, re.M):
        lines = table.strip().splitlines()
        head = [c.strip() for c in lines[0].strip("|").split("|")]
        if head[0] != "paper row":
            continue
        for line in lines[2:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            m = re.fullmatch(r"Table (\d): (.+)", cells[0])
            assert m, f"docs/reproduce.md: a paper row that names no table cell: {line}"
            yield m.group(1), m.group(2), dict(zip(head[2:], cells[2:]))


def test_reproduce_quotes_the_papers_values_from_the_shipped_tables():
    """Every value the page quotes as the paper's equals the cell of marlin/data/paper_tables.json it names, as
    the paper prints it; every cell a shipped config names is quoted; the page's `paper` examples load."""
    import yaml

    from marlin.downstream.config import load_run_config, shipped_configs
    from marlin.paper import columns, is_percent, paper_value

    text = (ROOT / "docs" / "reproduce.md").read_text()
    quoted = set()
    for table, row, cells in _paper_rows(text):
        assert cells and set(cells) <= set(columns(table)), (table, row, cells)
        for column, value in cells.items():
            paper = paper_value(table, row, column)
            digits = 2 if is_percent(table, column) else 3 if table == "5" else 4
            assert value == f"{paper:.{digits}f}", f"Table {table}, {row}, {column}: page {value}, paper {paper}"
            quoted.add((table, row, column))
    named = set()
    for name in shipped_configs():
        for entries in (load_run_config(name).paper or {}).get("rows", {}).values():
            for e in entries if isinstance(entries, list) else [entries]:
                named |= {(str(e["table"]), e["row"], c) for c in e["metrics"].values()}
    assert named - quoted == set()
    example = yaml.safe_load(re.search(r"```yaml\n(paper:.*?)```", text, re.S).group(1))
    load_run_config("mosei_sentiment7_lp", values={"paper": example["paper"]})
    override = re.search(r"`--set '(paper=.*?)'`", text).group(1)
    assert load_run_config("celebvhq_appearance_lp", [override]).paper["rows"]["marlin_vit_base_ytf"]["table"] == 2
