"""Options made from dataclasses, and --config files checked against the parser."""
import dataclasses
from typing import Optional, Tuple

import pytest

from sepalm_espnet.utils import cli


@dataclasses.dataclass
class Options:
    temperature: float = dataclasses.field(default=1.0, metadata={"help": "0: greedy"})
    top_k: int = 0
    steps: Optional[Tuple[int, ...]] = None
    greedy: bool = False
    name: Optional[str] = None


def parser():
    p = cli.standard_parser("test")
    cli.add_dataclass_options(p, Options)
    cli.add_config_option(p)
    return p


def test_defaults_come_from_the_dataclass_and_round_trip():
    args = cli.parse_args(parser(), [])
    assert cli.options_from_args(args, Options) == Options()
    args = cli.parse_args(parser(), ["--steps", "2", "3", "--greedy", "true", "--top_k", "5"])
    assert cli.options_from_args(args, Options) == Options(top_k=5, steps=(2, 3), greedy=True)


def test_config_file_sets_options_and_the_command_line_wins(tmp_path):
    config = tmp_path / "decode.yaml"
    config.write_text("temperature: 0.5\ntop_k: 40\ngreedy: true\n")
    args = cli.parse_args(parser(), ["--config", str(config), "--top_k", "3"])
    assert cli.options_from_args(args, Options) == Options(temperature=0.5, top_k=3, greedy=True)


def test_config_file_with_an_unknown_or_bad_option_names_the_file(tmp_path):
    config = tmp_path / "decode.yaml"
    config.write_text("temprature: 0.5\n")
    with pytest.raises(SystemExit, match="decode.yaml: unknown option\\(s\\) temprature"):
        cli.parse_args(parser(), ["--config", str(config)])
    config.write_text("top_k: many\n")
    with pytest.raises(SystemExit, match="decode.yaml: top_k"):
        cli.parse_args(parser(), ["--config", str(config)])
