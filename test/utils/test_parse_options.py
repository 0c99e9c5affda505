import subprocess
from pathlib import Path

import pytest

PARSE_OPTIONS = Path(__file__).resolve().parents[2] / "utils" / "parse_options.sh"


def make_script(path, positional=False):
    """A script declaring options the way recipes do, printing what it parsed."""
    switch = "parse_options_positional=true\n" if positional else ""
    path.write_text(f"""#!/usr/bin/env bash
set -euo pipefail
nj=4                 # number of parallel jobs
use_gpu=false        # decode on the GPU
inference_args=""    # extra decoding arguments
help_message="Usage: $0 [options] <data-dir>"
{switch}. {PARSE_OPTIONS}
echo "nj=$nj use_gpu=$use_gpu inference_args=[$inference_args] rest=[$*]"
""")
    return path


@pytest.fixture
def script(tmp_path):
    return make_script(tmp_path / "script.sh")


@pytest.fixture
def positional_script(tmp_path):
    return make_script(tmp_path / "positional.sh", positional=True)


def run(script, *args):
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True)


def test_space_and_equals_forms_with_dashes_as_underscores(script):
    result = run(script, "--nj", "8", "--use-gpu=true", "--inference_args", "--beam 5")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "nj=8 use_gpu=true inference_args=[--beam 5] rest=[]\n"


@pytest.mark.parametrize("args, word", [
    (["--nj", "3", "-use_gpu", "true", "--inference_args", "x"], "-use_gpu"),
    (["-nj", "3"], "-nj"),
    (["--nj", "3", "data/x", "--use-gpu", "true"], "data/x"),
    (["--", "data/x"], "data/x"),
])
def test_rejects_leftover_arguments_without_the_positional_switch(script, args, word):
    result = run(script, *args)
    assert result.returncode == 1
    assert f"unexpected argument '{word}'" in result.stderr
    assert result.stdout == ""


def test_positional_switch_keeps_the_words_after_the_options(positional_script):
    result = run(positional_script, "--nj", "8", "data/x", "exp/y z")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "nj=8 use_gpu=false inference_args=[] rest=[data/x exp/y z]\n"
    assert run(positional_script, "--", "--nj", "-2").stdout.endswith("rest=[--nj -2]\n")
    assert run(positional_script, "-", "x").stdout.endswith("rest=[- x]\n")


@pytest.mark.parametrize("args, message", [
    (["--nj", "3", "-use_gpu", "true"], "unexpected argument '-use_gpu'"),
    (["data/x", "--nj", "2"], "option --nj after the positional argument 'data/x'"),
    (["data/x", "-v"], "option -v after the positional argument 'data/x'"),
])
def test_positional_switch_still_rejects_misplaced_options(positional_script, args, message):
    result = run(positional_script, *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stdout == ""


def test_positional_switch_is_boolean_and_not_an_option(tmp_path, positional_script):
    assert "unknown option --parse_options_positional" in run(
        positional_script, "--parse-options-positional", "false").stderr
    assert "parse_options_positional" not in run(positional_script, "--help").stdout
    bad = tmp_path / "bad.sh"
    bad.write_text(f"parse_options_positional=yes\n. {PARSE_OPTIONS}\necho ok\n")
    result = run(bad)
    assert result.returncode == 1 and result.stdout == ""
    assert "parse_options_positional must be true or false, got 'yes'" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--nproc", "2"], "unknown option --nproc"),
    (["--PATH", "/x"], "unknown option --PATH"),
    (["--help-message", "x"], "unknown option --help_message"),
    (["--use-gpu", "yes"], "option --use_gpu is boolean: expected true or false, got 'yes'"),
    (["--nj"], "option --nj needs a value"),
    (["--nj", "abc"], "--nj: 'abc' is not an integer"),
    (["--nj=1.5"], "--nj: '1.5' is not an integer"),
    (["--nj="], "--nj: '' is not an integer"),
    (["--nj", "1:2"], "--nj: '1:2' is not an integer"),
])
def test_rejects_bad_options(script, args, message):
    result = run(script, *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("value", ["0", "-1", "12"])
def test_integer_options_take_any_integer(script, value):
    # Whether 0 or -1 makes sense is the script's business, not the parser's.
    result = run(script, "--nj", value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"nj={value} ")


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
    command = (f"set -euo pipefail; a=1; b=true; parse_options_positional=true; . {PARSE_OPTIONS}; "
               f"echo $a $b $*")
    result = subprocess.run(["bash", "-c", command, "prog", "--a=2", "--b", "false", "x"],
                            capture_output=True, text=True)
    assert result.stdout == "2 false x\n", result.stderr
