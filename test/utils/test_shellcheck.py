"""shellcheck over the project's shell scripts, one test per file.

Each script is checked from the directory it runs in (the repo root for utils/, the recipe
dir for egs2/*/sepalm1/...), so `-x` follows what it sources: utils/parse_options.sh,
./path.sh, ./cmd.sh, ./db.sh.
"""
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PATTERNS = ("utils/*.sh", "egs2/TEMPLATE/sepalm1/*.sh", "egs2/TEMPLATE/sepalm1/scripts/*.sh",
            "egs2/*/sepalm1/run.sh", "egs2/*/sepalm1/local/*.sh")
SCRIPTS = sorted({str(path.relative_to(REPO))
                  for pattern in PATTERNS for path in REPO.glob(pattern)})


def run_dir(script: str) -> Path:
    """The recipe dir (egs2/<corpus>/sepalm1) of a recipe script; the repo root otherwise."""
    parts = Path(script).parts
    return REPO.joinpath(*parts[:3]) if parts[0] == "egs2" else REPO


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck_is_clean(script):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; tools/install.sh)")
    cwd = run_dir(script)
    path = str((REPO / script).relative_to(cwd))
    result = subprocess.run(["shellcheck", "-x", "--severity=style", "--format=gcc", path],
                            cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"shellcheck in {cwd.relative_to(REPO) or '.'}:\n" \
                                   f"{result.stdout}{result.stderr}"
