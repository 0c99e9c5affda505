"""Recipe runners for integration tests: a scratch copy, so tests never write into the source tree."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parents[2]
OUTPUT_DIRS = {"data", "dump", "exp", "downloads"}


def scratch_recipe(corpus: str, dest: Path) -> Path:
    """Link every file of egs2/<corpus>/sepalm1 (not its outputs) into dest."""
    src = REPO / "egs2" / corpus / "sepalm1"
    dest.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        if entry.name not in OUTPUT_DIRS:
            (dest / entry.name).symlink_to(entry.resolve())
    return dest


def run_recipe(recipe_dir: Path, args: List[str], timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        ["./run.sh", *args], cwd=recipe_dir, env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="session")
def recipe_tools():
    """(scratch_recipe, run_recipe), shared by the integration tests."""
    return scratch_recipe, run_recipe
