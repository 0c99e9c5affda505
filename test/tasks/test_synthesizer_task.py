"""SynthesizerTask: the four YAMLs, and one training step of each model through ESPnet's trainer.

Only the subprocesses import `espnet2.tasks` (20 s of imports); the rest stays light: the
YAMLs build their models on the meta device, and the trained checkpoints are loaded back from
config.yaml + .pth without the task.
"""
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import pytest
import torch
import yaml

from sepalm_espnet.synthesizer.ar_nar import ArNarSynthesizer
from sepalm_espnet.synthesizer.g2p import TokenList
from sepalm_espnet.synthesizer.layers import PAD_ID, SynthesisOptions
from sepalm_espnet.synthesizer.masked import MaskedSynthesizer
from sepalm_espnet.synthesizer.token_io import TokenReader, write_tokens

REPO = Path(__file__).resolve().parents[2]
TUNING = REPO / "egs2/TEMPLATE/sepalm1/conf/tuning"
MODELS = {"ar_nar": ArNarSynthesizer, "masked": MaskedSynthesizer}
PHONEMES = {"utt0": "h ə l oʊ | w ɜː l d", "utt1": "t ɛ s t", "utt2": "h ɛ l p | m iː", "utt3": "oʊ"}
FRAMES = {"utt0": 12, "utt1": 9, "utt2": 15, "utt3": 10}
MINI_CODEBOOKS, MINI_CODEBOOK_SIZE, SEMANTIC_VOCAB = 4, 256, 50


def build_from_config(config: dict, phoneme_vocab_size: Optional[int]) -> torch.nn.Module:
    return MODELS[config["model"]](**config["model_conf"], phoneme_vocab_size=phoneme_vocab_size)


def millions_of_parameters(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize(
    "name, millions",
    [
        ("train_syn_ar_nar_paper.yaml", 341.3),  # 154.4 AR + 186.9 NAR
        ("train_syn_masked_paper.yaml", 190.0),
        ("train_syn_ar_nar_mini.yaml", 0.425),
        ("train_syn_masked_mini.yaml", 0.302),  # semantic condition: no phoneme encoder
    ],
)
def test_configs_build_their_models(name, millions):
    config = yaml.safe_load((TUNING / name).read_text())
    with torch.device("meta"):
        model = build_from_config(config, phoneme_vocab_size=80)
    assert millions_of_parameters(model) == pytest.approx(millions, rel=0.01)
    assert config["optim"] == "adamw" and config["model_conf"]["cond_drop_prob"] == 0.1
    if name.endswith("paper.yaml"):
        assert config["optim_conf"]["lr"] == 5.0e-4 and config["scheduler"] == "warmuplr"
        conf = config["model_conf"]
        assert (conf["num_layers"], conf["nhead"], conf["d_model"], conf["dim_feedforward"]) == (12, 16, 1024, 4096)
        assert (conf["num_codebooks"], conf["codebook_size"]) == (12, 1024)
    if config["model"] == "masked" and name.endswith("paper.yaml"):
        assert config["model_conf"]["inference_steps"][0] == 25


def make_data_dir(path: Path, seed: int) -> Path:
    """Token arks of Ŝ and S, phoneme text, semantic units, shape files and the token list."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    for name in ("est_tokens", "ref_tokens"):
        tokens = {key: rng.integers(0, MINI_CODEBOOK_SIZE, (MINI_CODEBOOKS, n)) for key, n in FRAMES.items()}
        write_tokens(path / f"{name}.ark", path / f"{name}.scp", tokens, MINI_CODEBOOK_SIZE)
        # What --collect_stats would write: `key frames,codebooks`.
        (path / f"{name}_shape").write_text("".join(f"{key} {n},{MINI_CODEBOOKS}\n" for key, n in FRAMES.items()))
    (path / "phonemes").write_text("".join(f"{key} {text}\n" for key, text in PHONEMES.items()))
    units = {key: rng.integers(0, SEMANTIC_VOCAB, n + 3) for key, n in FRAMES.items()}
    (path / "semantic").write_text("".join(f"{key} {' '.join(map(str, ids))}\n" for key, ids in units.items()))
    TokenList.build(PHONEMES.values()).save(path / "tokens.txt")
    return path


# The two runs cover both kinds of YAML (the paper's batching by token count, the mini's by
# utterance count); the paper one is shrunk to CPU size on the command line.
RUNS = {
    "ar_nar": dict(
        config="train_syn_ar_nar_mini.yaml",
        streams=["est_tokens", "ref_tokens", "phonemes"],
        options=["--token_list", "{data}/tokens.txt", "--batch_size", "2"],
    ),
    "masked": dict(  # the paper's condition, semantic tokens; needs no token list
        config="train_syn_masked_paper.yaml",
        streams=["est_tokens", "ref_tokens", "semantic"],
        options=[
            "--batch_bins", "200", "--num_workers", "0",
            *[f"--model_conf={key}={value}" for key, value in dict(
                num_codebooks=MINI_CODEBOOKS, codebook_size=MINI_CODEBOOK_SIZE, d_model=32, nhead=4, num_layers=1,
                dim_feedforward=64, semantic_vocab_size=SEMANTIC_VOCAB,
            ).items()],
        ],
    ),
}
DATA_FILES = {
    "est_tokens": ("est_tokens.scp", "kaldi_ark"),
    "ref_tokens": ("ref_tokens.scp", "kaldi_ark"),
    "phonemes": ("phonemes", "text"),
    "semantic": ("semantic", "text_int"),
}


def test_paper_and_mini_configs_set_the_same_options():
    """Each run of the integration test checks one YAML per pair against ESPnet's parser."""
    for size in ("paper", "mini"):
        ar_nar, masked = (yaml.safe_load((TUNING / f"train_syn_{model}_{size}.yaml").read_text()) for model in MODELS)
        assert set(ar_nar) == set(masked)
        assert {key: value for key, value in ar_nar.items() if key not in ("model", "model_conf")} == {
            key: value for key, value in masked.items() if key not in ("model", "model_conf")
        }


def train_command(model: str, data: Path, exp: Path):
    run = RUNS[model]
    args = [
        "--config", TUNING / run["config"], *[option.format(data=data) for option in run["options"]],
        "--output_dir", exp, "--ngpu", "0", "--max_epoch", "1", "--num_iters_per_epoch", "1",
        "--use_matplotlib", "false", "--use_tensorboard", "false",
    ]
    for split in ("train", "valid"):
        for name in run["streams"]:
            file, kind = DATA_FILES[name]
            args += [f"--{split}_data_path_and_name_and_type", f"{data / file},{name},{kind}"]
        args += [f"--{split}_shape_file", data / "ref_tokens_shape", f"--{split}_shape_file", data / "est_tokens_shape"]
    return [sys.executable, "-m", "sepalm_espnet.bin.syn_train", *map(str, args)]


def load_trained(exp: Path) -> Tuple[torch.nn.Module, dict]:
    """The model from config.yaml (build_model made it carry the token list) + the best weights."""
    config = yaml.safe_load((exp / "config.yaml").read_text())
    token_list = config["token_list"]
    model = build_from_config(config, phoneme_vocab_size=None if token_list is None else len(token_list))
    model.load_state_dict(torch.load(exp / "valid.loss.best.pth", map_location="cpu", weights_only=True))
    return model.eval(), config


def padded_batch(sequences: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(sequence) for sequence in sequences])
    return torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=PAD_ID), lengths


@pytest.mark.integration
def test_one_training_step_of_each_model_then_generate(tmp_path):
    data = make_data_dir(tmp_path / "data", seed=0)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    # Both trainings at once: each spends most of its time importing ESPnet.
    runs = {
        model: subprocess.Popen(train_command(model, data, tmp_path / model), cwd=REPO, env=env, text=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for model in MODELS
    }
    for model, run in runs.items():
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, f"{model}: {stderr[-4000:]}"

    keys = ["utt1", "utt3"]
    token_list = TokenList.from_file(data / "tokens.txt")
    est_tokens, est_lengths = padded_batch([torch.from_numpy(TokenReader(data / "est_tokens.scp")[key]).T for key in keys])
    phonemes, phoneme_lengths = padded_batch([torch.tensor(token_list.encode(PHONEMES[key])) for key in keys])

    ar_nar, config = load_trained(tmp_path / "ar_nar")
    assert config["token_list"] == token_list.tokens
    tokens, lengths = ar_nar.generate(est_tokens, est_lengths, phonemes, phoneme_lengths,
                                      options=SynthesisOptions(top_k=20, guidance_scale=1.5))
    assert tokens.shape[2] == MINI_CODEBOOKS and int(lengths.max()) <= math.ceil(1.5 * 10)

    masked, config = load_trained(tmp_path / "masked")
    assert config["model_conf"]["condition"] == "semantic" and config["token_list"] is None
    semantic, semantic_lengths = padded_batch([torch.randint(0, SEMANTIC_VOCAB, (n,)) for n in (12, 9)])
    tokens, lengths = masked.generate(est_tokens, est_lengths, semantic=semantic, semantic_lengths=semantic_lengths,
                                      options=SynthesisOptions(steps=[4, 1], guidance_scale=1.5))
    assert tokens.shape == (2, 10, MINI_CODEBOOKS) and torch.equal(lengths, est_lengths)
