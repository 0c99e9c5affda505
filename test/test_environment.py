"""The environment tools/install.sh builds: every package the toolkit relies on imports.

A suite that passes on a broken environment proves nothing, so this runs in CI with the rest.
"""
import importlib
import runpy
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKED_MODULES = runpy.run_path(str(REPO / "tools" / "check_env.py"), run_name="check_env_modules")["MODULES"]


@pytest.mark.parametrize("module", CHECKED_MODULES)
def test_package_imports(module):
    importlib.import_module(module)


def test_torchaudio_runs_without_its_extension():
    import torch
    import torchaudio

    assert not torchaudio._extension._IS_TORCHAUDIO_EXT_AVAILABLE
    spectrogram = torchaudio.transforms.Spectrogram(n_fft=64)(torch.zeros(1, 640))
    assert spectrogram.shape[-2] == 33


@pytest.mark.parametrize("program", ["espeak-ng", "flite", "sox"])
def test_system_programs_are_installed(program):
    assert shutil.which(program), f"{program} missing: run tools/install.sh"


def test_whisper_base_model_is_assembled():
    model_dir = REPO / "tools" / "models" / "whisper-base-ct2"
    assert (model_dir / "model.bin").stat().st_size > 100_000_000
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        assert (model_dir / name).is_file()
