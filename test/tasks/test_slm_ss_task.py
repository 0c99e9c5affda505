"""SlmSsTask: one epoch through ESPnet's trainer on codec-token targets, then stage 4's bin,
SeparatorModel and a packed archive separate with the result, through the codec in its config.

Only the subprocess imports `espnet2.tasks` for training; the rest stays light.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from sepalm_espnet import zoo
from sepalm_espnet.bin import sep_inference
from sepalm_espnet.data.kaldi_dir import read_kv, write_kv
from sepalm_espnet.pipeline import SeparatorModel
from sepalm_espnet.separator.registry import SLM_SS, load_separator
from sepalm_espnet.slm_ss.inference import STATUS_FILE
from sepalm_espnet.slm_ss.model import STATUSES, SlmSsDecodeOptions
from sepalm_espnet.synthesizer.codec import build_dac, save_dac
from sepalm_espnet.synthesizer.token_io import tokenize_wav_scp

REPO = Path(__file__).resolve().parents[2]
MINI_CONFIG = REPO / "egs2/TEMPLATE/sepalm1/conf/tuning/train_slm_ss_mini.yaml"
FS = 16000
CODEBOOKS, ENTRIES = 4, 32
# Smaller than the mini config, so the epoch takes seconds.
SHRINK = ["--model_conf", "d_model=32", "--model_conf", "nhead=2", "--model_conf", "dim_feedforward=64",
          "--model_conf", "num_encoder_layers=1", "--model_conf", "num_decoder_layers=1",
          "--model_conf", "num_nar_layers=1", "--model_conf", f"codebook_size={ENTRIES}",
          "--model_conf", "encoder_conf={output_dim: 32, n_mels: 16, num_layers: 1}"]


def save_tiny_codec(path: Path) -> Path:
    torch.manual_seed(0)
    save_dac(build_dac(encoder_dim=4, encoder_rates=[2, 4, 5, 8], latent_dim=16, decoder_dim=16,
                       n_codebooks=CODEBOOKS, codebook_size=ENTRIES, codebook_dim=4), path)
    return path


@pytest.fixture(scope="module")
def codec_file(tmp_path_factory):
    return save_tiny_codec(tmp_path_factory.mktemp("codec") / "codec.pth")


def make_data_dir(path: Path, utterances, seed: int, codec_file: Path) -> Path:
    """Mixtures with spk1/spk2.scp, as stage 2 dumps them, and the codec tokens stage 3 makes."""
    from sepalm_espnet.synthesizer.codec import DacCodec

    rng = np.random.default_rng(seed)
    tables = {"wav.scp": {}, "spk1.scp": {}, "spk2.scp": {}, "speech_mix_shape": {}}
    for index, utt in enumerate(utterances):
        length = 4800 - 640 * index
        sources = 0.1 * rng.standard_normal((2, length)).astype(np.float32)
        (path / "wavs").mkdir(parents=True, exist_ok=True)
        for name, wave in (("wav.scp", sources.sum(axis=0)), ("spk1.scp", sources[0]), ("spk2.scp", sources[1])):
            file = path / "wavs" / f"{utt}_{name.split('.')[0]}.wav"
            sf.write(file, wave, FS)
            tables[name][utt] = str(file)
        tables["speech_mix_shape"][utt] = str(length)
    for name, entries in tables.items():
        write_kv(path / name, entries)
    codec = DacCodec.from_pretrained(codec_file)
    for n in (1, 2):
        tokenize_wav_scp(codec, path / f"spk{n}.scp", path / f"ref_tokens{n}.ark", path / f"ref_tokens{n}.scp")
        frames = {key: f"{codec.num_frames(int(samples))},{CODEBOOKS}" for key, samples in
                  tables["speech_mix_shape"].items()}
        write_kv(path / f"ref_tokens{n}_shape", frames)
    return path


def data_args(train: Path, valid: Path) -> list:
    """The recipe's stage-3 data options: the mixture first (it batches), then both speakers' tokens."""
    options = []
    for split, path in (("train", train), ("valid", valid)):
        options += [f"--{split}_data_path_and_name_and_type", f"{path}/wav.scp,speech_mix,sound"]
        for n in (1, 2):
            options += [f"--{split}_data_path_and_name_and_type", f"{path}/ref_tokens{n}.scp,ref_tokens{n},kaldi_ark"]
        for name in ("speech_mix", "ref_tokens1", "ref_tokens2"):
            options += [f"--{split}_shape_file", f"{path}/{name}_shape"]
    return options


def run_slm_ss_train(*args) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "sepalm_espnet.bin.slm_ss_train", *map(str, args)],
                            cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory, codec_file):
    root = tmp_path_factory.mktemp("slm_ss")
    train = make_data_dir(root / "train", ["tr0", "tr1", "tr2"], 0, codec_file)
    valid = make_data_dir(root / "valid", ["cv0", "cv1"], 1, codec_file)
    exp = root / "exp"
    log = run_slm_ss_train("--config", MINI_CONFIG, *data_args(train, valid), "--codec", codec_file, *SHRINK,
                           "--output_dir", exp, "--ngpu", "0", "--max_epoch", "2", "--batch_size", "2")
    return exp, valid, log


@pytest.mark.integration
def test_train_then_the_trainer_saves_a_self_describing_experiment(trained, codec_file):
    exp, _, log = trained
    config = yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8"))
    assert config["model"] == SLM_SS and config["codec"] == str(codec_file)
    assert config["model_conf"]["d_model"] == 32
    assert (exp / "valid.loss.ave.pth").is_file()  # the recipe's default checkpoint for slm_ss
    assert "ar_acc=" in log and "nar_acc=" in log  # the model's own statistics reached the trainer


@pytest.mark.integration
def test_stage_4_bin_writes_two_speakers_of_the_input_length_and_their_status(trained, tmp_path):
    exp, valid, _ = trained
    out = tmp_path / "decode"
    sep_inference.main(["--data_dir", str(valid), "--model_file", str(exp / "valid.loss.ave.pth"), "--fs", str(FS),
                        "--output_dir", str(out), "--max_length_ratio", "1.0"])
    mixtures = read_kv(valid / "wav.scp")
    flat = read_kv(out / "wav.scp")
    assert set(flat) == {f"{key}_spk{n}" for key in mixtures for n in (1, 2)}
    for key, path in flat.items():
        wave, fs = sf.read(path)
        assert fs == FS and len(wave) == sf.info(mixtures[key.rsplit("_spk", 1)[0]]).frames
    with pytest.raises(SystemExit, match="separates 16000 Hz audio, not --fs 8000"):
        sep_inference.main(["--data_dir", str(valid), "--model_file", str(exp / "valid.loss.ave.pth"), "--fs", "8000",
                            "--output_dir", str(tmp_path / "at_8k")])
    statuses = read_kv(out / STATUS_FILE)
    assert set(statuses) == set(mixtures)
    assert all(status in STATUSES for value in statuses.values() for status in value.split(","))


@pytest.mark.integration
def test_separator_model_loads_the_experiment_and_its_archive_alike(trained, tmp_path):
    exp, valid, _ = trained
    mixture, fs = sf.read(read_kv(valid / "wav.scp")["cv0"], dtype="float32")
    from_exp = SeparatorModel.from_pretrained(exp)
    assert from_exp.loaded.kind == SLM_SS and from_exp.fs == FS
    estimates = from_exp.separate(mixture, FS)
    assert len(estimates) == 2 and all(e.shape == mixture.shape and e.dtype == np.float32 for e in estimates)
    assert len(from_exp.statuses) == 1  # one call for a mixture shorter than a segment
    archive = zoo.pack(tmp_path / "slm_ss.zip", {zoo.SEPARATOR_COMPONENT: {
        zoo.CONFIG_ROLE: exp / "config.yaml", zoo.MODEL_ROLE: exp / "valid.loss.ave.pth"}})
    from_archive = SeparatorModel.from_pretrained(archive, cache_dir=tmp_path / "cache")
    packed_config = zoo.load_component_config(zoo.cached_unpack_dir(archive, tmp_path / "cache"), zoo.SEPARATOR_COMPONENT)
    assert Path(packed_config["codec"]).is_file() and "cache" in packed_config["codec"]  # carried, not the original
    for a, b in zip(estimates, from_archive.separate(mixture, FS)):
        np.testing.assert_array_equal(a, b)  # greedy decoding: the same speech from either
    loaded = load_separator(None, exp / "valid.loss.ave.pth", slm_ss_options=SlmSsDecodeOptions(max_length_ratio=0.05))
    two = loaded.separate(torch.from_numpy(mixture)[None])
    assert len(two) == 2 and all(t.shape == (1, len(mixture)) for t in two)
    assert loaded.statuses[-1].startswith("capped")  # a tiny cap: counted, still two full-length speakers
