"""What a user of `pip install facemarlin-toolkit` gets: the wheel, installed NOT editable into a fresh
environment, run from outside the repository (so the source tree cannot be imported).

The fresh environment is `python -m venv --without-pip`; the wheel goes in with this venv's pip
(`pip --python`), and the dependencies (torch, numpy, av, ...) are borrowed from this venv's site-packages
through a plain path line in a .pth file, which does not run this venv's editable finder."""
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, ROOT

pytestmark = pytest.mark.timeout(240)


def _run(cmd, cwd, env=None, check=True):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(bin folder, environment variables) of a fresh environment holding the built wheel."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # build from a copy: setuptools writes build/ and *.egg-info beside the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "marlin", src / "marlin", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", tmp / "dist", src], cwd=tmp)
    wheels = list((tmp / "dist").glob("facemarlin_toolkit-*.whl"))
    assert len(wheels) == 1, wheels
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "marlin/configs/pretrain/tiny_cpu.yaml" in names  # package data travels with the wheel
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    meta = zipfile.ZipFile(wheels[0]).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    core = [line.split(": ", 1)[1] for line in meta.splitlines()
            if line.startswith("Requires-Dist: ") and "extra ==" not in line]
    assert sorted(r.split(">")[0].split("=")[0] for r in core) == ["av", "numpy", "pyyaml", "safetensors", "torch",
                                                                   "tqdm"], core  # the light core
    assert not any("==" in r for r in core), core  # ranges, never exact pins (users bring their own torch)
    assert "License-Expression: MIT" in meta
    for extra in ("face", "synth", "train", "downstream", "lipsync", "demo", "all", "test"):
        assert f"Provides-Extra: {extra}" in meta

    env_dir = tmp / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", env_dir], cwd=tmp)
    py = env_dir / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheels[0]],
         cwd=tmp)
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp)
                .stdout.strip())
    # A path line (not an import line): this venv's .pth files, the editable finder among them, stay inactive.
    (site / "zz_borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(tmp), "PYTHONNOUSERSITE": "1",
           "OMP_NUM_THREADS": "1"}
    where = _run([py, "-c", "import marlin, sys; print(marlin.__file__); print(sorted(sys.modules))"],
                 cwd=tmp, env=env).stdout
    version = _run([py, "-c", "import importlib.metadata as m, marlin; "
                               "print(m.version('facemarlin-toolkit'), marlin.__version__)"], cwd=tmp, env=env)
    assert len(set(version.stdout.split())) == 1, version.stdout  # one version: marlin.__version__
    assert where.splitlines()[0].startswith(str(site / "marlin")), where.splitlines()[0]
    assert "__editable___facemarlin_toolkit" not in where
    return env_dir / "bin", env, tmp


def test_installed_marlin_help(installed):
    bin_dir, env, tmp = installed
    r = _run([bin_dir / "marlin", "--help"], cwd=tmp, env=env)
    assert "extract" in r.stdout and "--debug" in r.stdout
    r = _run([bin_dir / "marlin", "extract", "--help"], cwd=tmp, env=env)
    assert "--checkpoint" in r.stdout


def test_installed_marlin_extract_matches_official(installed):
    """A real command end to end: official tiny checkpoint + a real face video -> the official features."""
    bin_dir, env, tmp = installed
    out = tmp / "feats"
    _run([bin_dir / "marlin", "extract", FIXTURES / "cropped01.mp4", "--model", FIXTURES / "tiny.yaml",
          "--checkpoint", FIXTURES / "tiny.encoder.pt", "--out", out], cwd=tmp, env=env)
    got = np.load(out / "cropped01.npy")
    assert np.abs(got - np.load(FIXTURES / "cropped01.features.npy")).max() <= 1e-4


def test_installed_marlin_reports_errors_in_one_line(installed):
    bin_dir, env, tmp = installed
    r = _run([bin_dir / "marlin", "extract", FIXTURES / "cropped01.mp4", "--model", FIXTURES / "tiny.yaml",
              "--checkpoint", tmp / "missing.encoder.pt", "--out", tmp / "o"], cwd=tmp, env=env, check=False)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("marlin extract: error: ") and "missing.encoder.pt" in r.stderr
    assert "Traceback" not in r.stderr
