"""The test suite's data paths and shared fixtures, in one place.

Every path is relative to this file, never to the working directory: the suite runs the same from the repository
root, from tests/ or from anywhere else (`cd /tmp && python -m pytest /path/to/tests/test_x.py`). Modules import
the paths (`from conftest import SAMPLES`) or take the fixtures, which fail, never skip, when shared data is missing.
"""
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]  # the repository
DATA = ROOT / "tests" / "data"  # the tests' own small files
SHARED = ROOT.parent / "shared"  # shared read-only data beside the checkout
FIXTURES = SHARED / "fixtures" / "official" / "tiny224"  # made by the official MARLIN code (its README.md says how)
SAMPLES = SHARED / "samples"  # real face videos
PAPER = SHARED / "paper"


def pytest_configure(config):
    config.addinivalue_line("markers", "lrs2(speakers=1, per_speaker=2, n_frames=30, min_frames=8): the toy LRS2 "
                                       "split behind the `store` fixture of a module")


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Every test, and every module fixture, runs on one torch thread: the suite's models are tiny by rule, where
    intra-op threads cost more in start-up and synchronisation than they give (far more on a shared, loaded machine).
    Session-wide and automatic: no module has to ask for it, and module fixtures that train run on it too."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.exists():
        pytest.fail(f"official fixtures missing at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    if not SAMPLES.exists():
        pytest.fail(f"sample videos missing at {SAMPLES}")
    return SAMPLES


@pytest.fixture(scope="session")
def toy_lrs2(tmp_path_factory):
    """``toy_lrs2(speakers, per_speaker, n_frames)``: the folder of a toy LRS2 dataset (32 px talking clips with audio,
    `marlin.lipsync.toy`), written once per session for each shape and shared read-only."""
    from marlin.lipsync.toy import write_toy_lrs2

    made: dict[tuple, Path] = {}

    def make(speakers: int = 1, per_speaker: int = 2, n_frames: int = 30) -> Path:
        key = (speakers, per_speaker, n_frames)
        if key not in made:
            made[key] = tmp_path_factory.mktemp(f"lrs2_{speakers}x{per_speaker}x{n_frames}")
            write_toy_lrs2(made[key], speakers, per_speaker, n_frames, size=32)
        return made[key]

    return make


@pytest.fixture(scope="module")
def store(request, toy_lrs2):
    """A `ClipStore` (32 px) of a toy LRS2 train split, one per module (its decode cache is the module's own). A module
    that needs more or longer clips says so: ``pytestmark = pytest.mark.lrs2(per_speaker=3, n_frames=50, ...)``."""
    from marlin.lipsync.data import ClipStore, lrs2_entries

    marker = request.node.get_closest_marker("lrs2")
    shape = {"speakers": 1, "per_speaker": 2, "n_frames": 30, "min_frames": 8, **(marker.kwargs if marker else {})}
    min_frames = shape.pop("min_frames")
    return ClipStore(lrs2_entries(toy_lrs2(**shape), "train"), 32, min_frames=min_frames)
