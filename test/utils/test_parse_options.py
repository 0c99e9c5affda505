import subprocess
from pathlib import Path

import pytest

PARSE_OPTIONS = Path(__file__).resolve().parents[2] / "utils" / "parse_options.sh"


@pytest.fixture
def script(tmp_path):
    """A script declaring options the way recipes do, printing what it parsed."""
    path = tmp_path / "script.sh"
    path.write_text(f"""#!/usr/bin/env bash
set -euo pipefail
nj=4                 # number of parallel jobs
use_gpu=false        # decode on the GPU
inference_args=""    # extra decoding arguments
help_message="Usage: $0 [options] <data-dir>"
. {PARSE_OPTIONS}
echo "nj=$nj use_gpu=$use_gpu inference_args=[$inference_args] rest=[$*]"
""")
    return path


def run(script, *args):
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True)


def test_space_and_equals_forms_with_dashes_as_underscores(script):
    result = run(script, "--nj", "8", "--use-gpu=true", "--inference_args", "--beam 5", "data/x")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "nj=8 use_gpu=true inference_args=[--beam 5] rest=[data/x]\n"


def test_stops_at_double_dash_and_first_positional(script):
    assert run(script, "--", "--nj", "2").stdout.endswith("rest=[--nj 2]\n")
    assert run(script, "a", "--nj", "2").stdout == (
        "nj=4 use_gpu=false inference_args=[] rest=[a --nj 2]\n")


@pytest.mark.parametrize("args, message", [
    (["--nproc", "2"], "unknown option --nproc"),
    (["--PATH", "/x"], "unknown option --PATH"),
    (["--help-message", "x"], "unknown option --help_message"),
    (["--use-gpu", "yes"], "option --use_gpu is boolean: expected true or false, got 'yes'"),
    (["--nj"], "option --nj needs a value"),
])
def test_rejects_bad_options(script, args, message):
    result = run(script, *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stdout == ""


def test_help_lists_declared_options_with_values_and_comments(script):
    result = run(script, "--nj", "3", "--help")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"Usage: {script} [options] <data-dir>"
    options = [line.split()[0] for line in lines if line.startswith("  --")]
    assert options == ["--nj=3", "--use_gpu=false", "--inference_args=''"]
    assert "number of parallel jobs" in result.stdout
    assert "help_message" not in result.stdout


def test_works_when_sourced_from_a_string():
    command = f"set -euo pipefail; a=1; b=true; . {PARSE_OPTIONS}; echo $a $b $*"
    result = subprocess.run(["bash", "-c", command, "prog", "--a=2", "--b", "false", "x"],
                            capture_output=True, text=True)
    assert result.stdout == "2 false x\n", result.stderr
