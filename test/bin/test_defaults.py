"""Every default is defined once: a bin option named like a field of a library dataclass the bin
uses takes that field's default (and help), so the two can never disagree."""
import dataclasses
import importlib
import pkgutil
from pathlib import Path

import pytest

import sepalm_espnet.bin

BINS = sorted(m.name for m in pkgutil.iter_modules(sepalm_espnet.bin.__path__)
              if "def get_parser" in (Path(sepalm_espnet.bin.__path__[0]) / f"{m.name}.py").read_text())


def library_dataclasses(module):
    return [value for value in vars(module).values()
            if isinstance(value, type) and dataclasses.is_dataclass(value)
            and value.__module__.startswith("sepalm_espnet.") and not value.__module__.startswith("sepalm_espnet.bin")]


def field_default(field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


@pytest.mark.parametrize("name", BINS)
def test_bin_options_take_the_library_defaults(name):
    module = importlib.import_module(f"sepalm_espnet.bin.{name}")
    actions = {action.dest: action for action in module.get_parser()._actions}
    for options_type in library_dataclasses(module):
        for field in dataclasses.fields(options_type):
            if field.name in actions:
                default = actions[field.name].default
                assert default == field_default(field), f"--{field.name} of {name}: {default!r}, " \
                    f"{options_type.__name__} says {field_default(field)!r}"


def test_decoding_bins_expose_their_options_dataclass():
    expected = {"sep_inference": "SegmentOptions", "cor_inference": "DecodeOptions",
                "syn_inference": "SynthesisOptions", "t2s_inference": "T2SDecodeOptions"}
    for name, options in expected.items():
        module = importlib.import_module(f"sepalm_espnet.bin.{name}")
        assert options in {t.__name__ for t in library_dataclasses(module)}, name
        dests = {action.dest for action in module.get_parser()._actions}
        fields = {f.name for f in dataclasses.fields(getattr(module, options))}
        assert fields <= dests, f"{name} lacks --{', --'.join(sorted(fields - dests))}"
        assert {"config", "device", "key_file", "output_dir"} <= dests, name
