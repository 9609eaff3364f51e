import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures" / "official" / "tiny224"
SAMPLES = SHARED / "samples"

torch.set_num_threads(min(2, os.cpu_count() or 1))


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


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread, and far faster on a shared, loaded machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
