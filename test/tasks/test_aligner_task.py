"""AlignerTask: s* length fitting, the YAML, and one epoch through ESPnet's trainer.

Only the subprocess imports `espnet2.tasks` (20 s of imports); the rest stays light.
"""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from sepalm_espnet.aligner.model import AlignerBuilder, AlignerModel, STFTAligner, fit_synthesized_length

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "egs2/TEMPLATE/sepalm1/conf/tuning/train_ali_cnn.yaml"
MINI_CONFIG = REPO / "egs2/TEMPLATE/sepalm1/conf/tuning/train_ali_cnn_mini.yaml"
FS = 16000
NAMES = ("speech_est", "speech_syn", "speech_ref")


@pytest.mark.parametrize("syn_length", [900, 1000, 1250])
def test_synthesized_speech_fitted_to_estimate_length(syn_length):
    synthesized = np.arange(1, syn_length + 1, dtype=np.float32)
    estimate = np.ones(1000, np.float32)
    data = {"speech_est": estimate, "speech_syn": synthesized, "speech_ref": estimate.copy()}
    fitted = fit_synthesized_length("utt", data)["speech_syn"]
    kept = min(syn_length, 1000)
    assert len(fitted) == 1000
    np.testing.assert_array_equal(fitted[:kept], synthesized[:kept])
    assert np.all(fitted[kept:] == 0)


def test_reference_of_another_length_names_the_utterance():
    data = {name: np.ones(1000, np.float32) for name in NAMES}
    data["speech_ref"] = np.ones(990, np.float32)
    with pytest.raises(ValueError, match="utt7: speech_ref has 990 samples"):
        fit_synthesized_length("utt7", data)


@pytest.mark.parametrize("config_path", [CONFIG, MINI_CONFIG], ids=["paper", "mini"])
def test_config_builds_the_papers_aligner(config_path):
    config = yaml.safe_load(config_path.read_text())
    assert config["model"] == "stft_cnn"
    assert sum(p.numel() for p in STFTAligner(**config["model_conf"]).parameters()) == 130_989
    assert config["best_model_criterion"] == [["valid", "loss", "min"]]
    # Whole utterances padded in a batch: ESPnet's folded sampler wants one fold length per
    # shape file, and the recipe passes one per data name.
    assert config["iterator_type"] == "sequence" and config["batch_type"] == "folded"
    assert len(config["fold_length"]) == len(NAMES) and len(set(config["fold_length"])) == 1


def test_mini_config_has_the_papers_model_and_optimiser():
    """The mini config may change the batching, never the model or its optimiser."""
    paper, mini = (yaml.safe_load(path.read_text()) for path in (CONFIG, MINI_CONFIG))
    for key in ("model", "model_conf", "optim", "optim_conf", "grad_clip", "iterator_type", "batch_type",
                "batch_size"):
        assert mini[key] == paper[key], key


def test_light_builder_builds_what_the_task_trains():
    """Inference builds the model without the task's ESPnet imports (AlignerBuilder)."""
    config = yaml.safe_load(CONFIG.read_text())
    model = AlignerBuilder.build_model(argparse.Namespace(model="stft_cnn", model_conf=config["model_conf"]))
    assert isinstance(model, AlignerModel) and isinstance(model.aligner, STFTAligner)
    assert sum(p.numel() for p in model.parameters()) == 130_989
    with pytest.raises(ValueError, match=r"choose from \['stft_cnn'\]"):
        AlignerBuilder.build_model(argparse.Namespace(model="unet", model_conf={}))


def make_data_dir(path: Path, keys, seed: int) -> Path:
    """Triples of 0.25-0.5 s, lengths differing (batches are padded): ŝ and s* are the reference
    plus noise, s* one codec frame longer. Shape files as collect_stats writes them."""
    rng = np.random.default_rng(seed)
    lines = {name: [] for name in NAMES}
    shapes = []
    for index, key in enumerate(keys):
        length = FS // 2 - 1000 * index
        reference = rng.standard_normal(length).astype(np.float32) * 0.1
        triple = {
            "speech_ref": reference,
            "speech_est": reference + 0.05 * rng.standard_normal(length).astype(np.float32),
            "speech_syn": np.pad(reference, (0, 320)) + 0.05 * rng.standard_normal(length + 320).astype(np.float32),
        }
        for name, samples in triple.items():
            wav = path / "wavs" / f"{key}_{name}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(wav, samples, FS)
            lines[name].append(f"{key} {wav}\n")
        shapes.append(f"{key} {length}\n")
    for name, entries in lines.items():
        (path / f"{name}.scp").write_text("".join(sorted(entries)))
        (path / f"{name}_shape").write_text("".join(sorted(shapes)))  # s* fitted to ŝ's length
    return path


def run_ali_train(*args) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "sepalm_espnet.bin.ali_train", *map(str, args)],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stderr


@pytest.mark.integration
def test_train_one_epoch(tmp_path):
    train = make_data_dir(tmp_path / "train", [f"tr{i}" for i in range(4)], seed=0)
    valid = make_data_dir(tmp_path / "valid", ["cv0", "cv1"], seed=1)
    data_args = []
    for split, path in (("train", train), ("valid", valid)):
        for name in NAMES:
            data_args += [f"--{split}_data_path_and_name_and_type", f"{path}/{name}.scp,{name},sound",
                          f"--{split}_shape_file", f"{path}/{name}_shape"]
    exp = tmp_path / "exp"
    # No collect_stats pass: make_data_dir writes the shape files the sequence iterator sorts by.
    log = run_ali_train(
        "--config", CONFIG, *data_args, "--output_dir", exp, "--ngpu", "0", "--max_epoch", "1",
        "--batch_size", "2", "--num_workers", "0", "--model_conf", "hidden_channels=8",
    )

    model_file = exp / "valid.loss.best.pth"
    assert model_file.is_file()
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["model"] == "stft_cnn" and config["model_conf"]["hidden_channels"] == 8
    assert config["iterator_type"] == "sequence"
    model = AlignerModel(STFTAligner(**config["model_conf"]))
    model.load_state_dict(torch.load(model_file, map_location="cpu"))
    # The output projection starts at zero (α = [1, 0]): non-zero means the optimizer stepped.
    assert model.aligner.output_projection.weight.abs().sum() > 0
    # Whole utterances, two a batch (folded: 2 // (1 + L // 4 s)), padded: 2 training batches.
    assert "[train] mini-batch sizes summary: N-batch=2, mean=2.0" in log
