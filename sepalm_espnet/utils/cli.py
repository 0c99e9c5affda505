"""What every bin entry point shares: options made from the library's dataclasses (so a default
lives in one place), ESPnet-style `--config` YAML files for them, and one way to fail.

A `--config` file holds `option: value` lines for the parser's own options (e.g. a
conf/decode_*.yaml); the command line overrides it; an unknown key is an error naming the file.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing
from typing import Any, Callable, Iterable, Optional, Sequence, Type, TypeVar

import yaml

T = TypeVar("T")
LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"


def str2bool(value: str) -> bool:
    """argparse type of a boolean option (true/false, as the shell recipes write them)."""
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{value}'")


def _argument_type(annotation: Any) -> Any:
    """(argparse type, nargs) of a dataclass field annotation."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Union and len(args) == 1:  # Optional[X]
        return _argument_type(args[0])
    if origin in (list, tuple, Sequence) and args:
        return args[0], "+"
    if annotation is bool:
        return str2bool, None
    if annotation in (int, float, str):
        return annotation, None
    raise TypeError(f"no command-line type for {annotation!r}")


def add_dataclass_options(parser: argparse.ArgumentParser, options_type: type, exclude: Iterable[str] = ()) -> None:
    """One --<field> option per dataclass field, its default and help taken from the field."""
    hints = typing.get_type_hints(options_type)
    group = parser.add_argument_group(options_type.__name__)
    for field in dataclasses.fields(options_type):
        if field.name in exclude or not field.init:
            continue
        arg_type, nargs = _argument_type(hints[field.name])
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = None
        kwargs = dict(type=arg_type, default=default, help=field.metadata.get("help", ""))
        if nargs:
            kwargs["nargs"] = nargs
        group.add_argument(f"--{field.name}", **kwargs)


def options_from_args(args: argparse.Namespace, options_type: Type[T], **overrides: Any) -> T:
    """The dataclass built from the parsed options of add_dataclass_options."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(options_type) if hasattr(args, f.name)}
    values.update(overrides)
    hints = typing.get_type_hints(options_type)
    for name, value in values.items():
        if isinstance(value, list) and _is_tuple(hints[name]):
            values[name] = tuple(value)
    return options_type(**values)


def _is_tuple(annotation: Any) -> bool:
    if typing.get_origin(annotation) is typing.Union:
        return any(_is_tuple(a) for a in typing.get_args(annotation))
    return typing.get_origin(annotation) is tuple


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML file of these options (the command line overrides it)")


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """parse_args with `--config` defaults (when the parser has that option) and logging set up."""
    if any(action.dest == "config" for action in parser._actions):
        known, _ = parser.parse_known_args(argv)
        if known.config:
            parser.set_defaults(**read_config(known.config, parser))
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "INFO"), format=LOG_FORMAT)
    return args


def read_config(path: str, parser: argparse.ArgumentParser) -> dict:
    """The options of a --config YAML file, checked against the parser's options."""
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"{path}: cannot read the config: {exc}") from exc
    if not isinstance(values, dict):
        raise SystemExit(f"{path}: a config is a mapping of option: value")
    known = {action.dest: action for action in parser._actions}
    unknown = sorted(set(values) - set(known) - {"config"})
    if unknown:
        raise SystemExit(f"{path}: unknown option(s) {', '.join(unknown)} (see --help)")
    for key, value in values.items():
        action = known[key]
        if action.type is not None and value is not None and not isinstance(value, list):
            try:
                values[key] = action.type(str(value).lower() if isinstance(value, bool) else value)
            except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
                raise SystemExit(f"{path}: {key}: {exc}") from exc
    return values


def run_main(program: str, work: Callable[[], None], errors: tuple = (ValueError, OSError)) -> None:
    """Runs a bin's work; an expected error ends the program with its message, not a traceback."""
    try:
        work()
    except errors as exc:
        sys.exit(f"{program}: {exc}")


def standard_parser(doc: Optional[str], log_level: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if log_level:
        parser.add_argument("--log_level", default="INFO")
    return parser


def add_job_options(parser: argparse.ArgumentParser, device: bool = True) -> None:
    """The options the recipe's job steps give every worker (scripts/stage_lib.sh job_array)."""
    parser.add_argument("--key_file", default=None, help="only these keys (a JOB split); default: all")
    parser.add_argument("--output_dir", required=True, help="the worker's output directory (Kaldi files)")
    if device:
        parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")


def add_scp_outputs(parser: argparse.ArgumentParser, what: str) -> None:
    """Workers that treat several scps of one split at once (estimates and references)."""
    parser.add_argument("--wav_scp", required=True, nargs="+", help="audio scps, each with the keys of --key_file")
    parser.add_argument("--output_names", required=True, nargs="+", help=f"one {what} name per --wav_scp")


def scp_outputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list:
    """[(scp, output path)] of add_scp_outputs' options."""
    from pathlib import Path

    if len(args.wav_scp) != len(args.output_names):
        parser.error(f"{len(args.wav_scp)} --wav_scp but {len(args.output_names)} --output_names")
    return [(scp, Path(args.output_dir) / name) for scp, name in zip(args.wav_scp, args.output_names)]


def add_decoder_options(parser: argparse.ArgumentParser, options_type: type) -> None:
    """A decoding worker's options: its library dataclass, a --config YAML of them, the job's."""
    add_dataclass_options(parser, options_type)
    add_config_option(parser)
    add_job_options(parser)
