"""ReseparationTask: one epoch through ESPnet's trainer, then the bin decodes with the result.

Only the subprocess imports `espnet2.tasks` (20 s of imports); the rest stays light.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from sepalm_espnet.bin import resep_inference
from sepalm_espnet.data.audio import read_audio
from sepalm_espnet.data.kaldi_dir import read_kv, write_kv
from sepalm_espnet.separator.reseparation import TranscriptConditionedSeparator
from sepalm_espnet.separator.reseparation_inference import ReseparationInference
from sepalm_espnet.synthesizer.g2p import TokenList

REPO = Path(__file__).resolve().parents[2]
MINI_CONFIG = REPO / "egs2/TEMPLATE/sepalm1/conf/tuning/train_resep_sepformer_mini.yaml"
FS = 16000
TOKENS = ["<blank>", "<unk>", "h", "ə", "l", "oʊ", "|", "w", "ɜː", "d", "<sos/eos>"]
PHONEMES = {1: "h ə l oʊ", 2: "w ɜː l d | h ə"}
# Smaller than the mini config, so the epoch takes a second.
SHRINK = ["--model_conf", "encoder_channel=16", "--model_conf", "d_model=16", "--model_conf", "nhead=2",
          "--model_conf", "dim_feedforward=32", "--model_conf", "chunk_size=10"]


def make_data_dir(path: Path, utterances, seed: int) -> Path:
    """One example per (mixture, speaker), keyed <utt>_spk<n>, as the recipe's per-estimate
    dirs hold them; shape files as collect_stats writes them (samples; phoneme tokens)."""
    rng = np.random.default_rng(seed)
    files = {name: {} for name in ("speech_mix.scp", "speech_ref.scp", "phonemes",
                                   "speech_mix_shape", "speech_ref_shape", "phonemes_shape")}
    for index, utt in enumerate(utterances):
        length = 4000 - 800 * index
        sources = 0.1 * rng.standard_normal((2, length)).astype(np.float32)
        mix = path / f"wavs/{utt}.wav"
        mix.parent.mkdir(parents=True, exist_ok=True)
        sf.write(mix, sources.sum(axis=0), FS)
        for n, text in PHONEMES.items():
            key = f"{utt}_spk{n}"
            ref = path / f"wavs/{key}.wav"
            sf.write(ref, sources[n - 1], FS)
            files["speech_mix.scp"][key] = str(mix)
            files["speech_ref.scp"][key] = str(ref)
            files["phonemes"][key] = text
            files["speech_mix_shape"][key] = files["speech_ref_shape"][key] = str(length)
            files["phonemes_shape"][key] = str(len(text.split()))
    for name, entries in files.items():
        write_kv(path / name, entries)
    return path


def run_resep_train(*args) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "sepalm_espnet.bin.resep_train", *map(str, args)],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stderr


@pytest.mark.integration
def test_train_one_epoch_then_decode(tmp_path):
    TokenList(TOKENS).save(tmp_path / "tokens.txt")
    train = make_data_dir(tmp_path / "train", ["tr0", "tr1"], seed=0)
    valid = make_data_dir(tmp_path / "valid", ["cv0"], seed=1)
    data_args = []
    for split, path in (("train", train), ("valid", valid)):
        for name, kind in (("speech_mix", "sound"), ("phonemes", "text"), ("speech_ref", "sound")):
            file = path / (name if kind == "text" else f"{name}.scp")
            data_args += [f"--{split}_data_path_and_name_and_type", f"{file},{name},{kind}"]
        for name in ("speech_mix", "phonemes", "speech_ref"):  # the recipe's order: the batching one first
            data_args += [f"--{split}_shape_file", f"{path}/{name}_shape"]
    exp = tmp_path / "exp"
    log = run_resep_train(
        "--config", MINI_CONFIG, *data_args, "--token_list", tmp_path / "tokens.txt", *SHRINK,
        "--output_dir", exp, "--ngpu", "0", "--max_epoch", "1", "--batch_size", "2", "--num_workers", "0",
    )

    model_file = exp / "valid.loss.best.pth"
    assert model_file.is_file()
    config = yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8"))
    assert config["model"] == "transcript_sepformer" and config["model_conf"]["d_model"] == 16
    assert config["token_list"] == TOKENS  # the list itself: the experiment loads without the file
    # 4 examples (2 mixtures x 2 speakers), whole, two a batch: 2 training batches.
    assert "[train] mini-batch sizes summary: N-batch=2, mean=2.0" in log

    output = tmp_path / "decode"
    resep_inference.main(["--model_file", str(model_file), "--mix_scp", str(valid / "speech_mix.scp"),
                          "--phonemes", str(valid / "phonemes"), "--output_dir", str(output)])
    scp = read_kv(output / "speech.scp")
    assert list(scp) == ["cv0_spk1", "cv0_spk2"]
    reseparator = ReseparationInference.from_files(None, model_file)
    assert isinstance(reseparator.model.separator, TranscriptConditionedSeparator)
    mixture, fs = read_audio(read_kv(valid / "speech_mix.scp")["cv0_spk2"])
    written, written_fs = read_audio(scp["cv0_spk2"])
    assert fs == written_fs == FS and written.shape == mixture.shape
    np.testing.assert_allclose(written, reseparator.extract(mixture, PHONEMES[2]), atol=1e-6)
    state = torch.load(model_file, map_location="cpu", weights_only=True)
    assert state["separator.fusion.phoneme_embedding.weight"].shape == (len(TOKENS), 16)
    # The trainer reported the model's own statistics for both splits.
    assert re.search(r"\[train\] .*si_snri=.*\[valid\] .*loss=.*si_snri=", log)
