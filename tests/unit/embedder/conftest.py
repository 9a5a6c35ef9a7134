from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.embedder.model_cache import exported_model_dir


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported_model_dir(tmp_path_factory)
