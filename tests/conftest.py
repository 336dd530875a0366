"""Shared fixtures: small committed photos (tests never need ../shared)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    from rdec.runtime.fileio import load_image

    return load_image(FIXTURES / "photo_192x128.png")


@pytest.fixture(scope="session")
def small_photo() -> np.ndarray:
    from rdec.runtime.fileio import load_image

    return load_image(FIXTURES / "photo_96x64.png")


@pytest.fixture(scope="session")
def key() -> bytes:
    return bytes(range(32))
