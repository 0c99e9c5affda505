"""Aligner inference: untrained weights return ŝ, the bin's JOB split, the merge, bad output."""
import numpy as np
import pytest
import torch
import yaml

from sepalm_espnet import zoo
from sepalm_espnet.aligner.inference import AlignerInference, AlignerInferenceError, align_scp
from sepalm_espnet.aligner.model import AlignerModel, STFTAligner
from sepalm_espnet.bin import ali_inference
from sepalm_espnet.data.audio import read_audio, write_audio
from sepalm_espnet.data.kaldi_dir import read_kv, write_kv
from sepalm_espnet.utils.job_outputs import merge_job_outputs

FS = 16000


@pytest.fixture
def trained_files(tmp_path):
    """config.yaml + weights of an aligner as training saves them, before any update (α = [1, 0])."""
    config = {"model": "stft_cnn", "model_conf": {"hidden_channels": 8, "max_lag_ms": 2.0, "fs": FS}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    model = AlignerModel(STFTAligner(**config["model_conf"]))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    return tmp_path / "config.yaml", tmp_path / "model.pth"


def speech_dirs(tmp_path, lengths):
    """est.scp and syn.scp (s* a little longer or shorter than ŝ, like a codec's output)."""
    rng = np.random.default_rng(0)
    est, syn = {}, {}
    for i, length in enumerate(lengths):
        key = f"utt{i}"
        est[key] = tmp_path / f"est/{key}.wav"
        syn[key] = tmp_path / f"syn/{key}.wav"
        write_audio(est[key], (0.1 * rng.standard_normal(length)).astype(np.float32), FS, subtype="FLOAT")
        write_audio(syn[key], (0.1 * rng.standard_normal(length + 160 * (-1) ** i)).astype(np.float32), FS, subtype="FLOAT")
    write_kv(tmp_path / "est.scp", {k: str(v) for k, v in est.items()})
    write_kv(tmp_path / "syn.scp", {k: str(v) for k, v in syn.items()})
    return tmp_path / "est.scp", tmp_path / "syn.scp"


def test_untrained_aligner_returns_the_estimate(trained_files):
    aligner = AlignerInference.from_files(*trained_files)
    assert aligner.fs == FS
    est = np.random.default_rng(1).standard_normal(3001).astype(np.float32)
    for syn_length in (2500, 3001, 3500):
        syn = np.random.default_rng(2).standard_normal(syn_length).astype(np.float32)
        aligned = aligner.align(est, syn)
        assert aligned.shape == est.shape and aligned.dtype == np.float32
        np.testing.assert_allclose(aligned, est, atol=1e-5)


def test_bin_splits_and_merges(trained_files, tmp_path):
    est_scp, syn_scp = speech_dirs(tmp_path, [1600, 2400, 2000])
    step = tmp_path / "out"
    write_kv(step / "logdir/keys.1.scp", {"utt2": "x", "utt0": "x"})
    write_kv(step / "logdir/keys.2.scp", {"utt1": "x"})
    config, model = trained_files
    for job in (1, 2):
        ali_inference.main([
            "--train_config", str(config), "--model_file", str(model), "--est_scp", str(est_scp),
            "--syn_scp", str(syn_scp), "--key_file", str(step / f"logdir/keys.{job}.scp"),
            "--output_dir", str(step / f"logdir/output.{job}"),
        ])
    assert list(read_kv(step / "logdir/output.1/speech.scp")) == ["utt0", "utt2"]
    merge_job_outputs(step, 2)  # the recipe's merger
    merged = read_kv(step / "speech.scp")
    assert list(merged) == ["utt0", "utt1", "utt2"]
    for key, path in merged.items():
        aligned, fs = read_audio(path)
        est, _ = read_audio(read_kv(est_scp)[key])
        assert fs == FS
        np.testing.assert_allclose(aligned, est, atol=1e-5)


def test_non_finite_output_names_the_key(trained_files, tmp_path):
    config, model_file = trained_files
    state = torch.load(model_file, weights_only=True)
    state["aligner.output_projection.bias"][:] = float("nan")
    torch.save(state, model_file)
    est_scp, syn_scp = speech_dirs(tmp_path, [1600])
    with pytest.raises(AlignerInferenceError, match="utt0"):
        align_scp(AlignerInference.from_files(config, model_file), est_scp, syn_scp, tmp_path / "out")
    assert not (tmp_path / "out/speech.scp").exists()


def test_loads_from_a_packed_archive(trained_files, tmp_path):
    config, model = trained_files
    archive = zoo.pack(tmp_path / "ali.zip", {"aligner": {"config": config, "model": model}})
    aligner = AlignerInference.from_pretrained(archive, cache_dir=tmp_path / "cache")
    est = np.random.default_rng(3).standard_normal(2000).astype(np.float32)
    np.testing.assert_allclose(aligner.align(est, est[::-1].copy()), est, atol=1e-5)
