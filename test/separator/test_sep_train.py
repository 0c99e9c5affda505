"""sep_train (collect stats, one epoch through ESPnet's trainer), then sep_inference on the result."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sepalm_espnet.data.kaldi_dir import read_kv

REPO = Path(__file__).resolve().parents[2]
MINI_CONFIG = REPO / "egs2/TEMPLATE/sepalm1/conf/tuning/train_sep_sepformer_mini.yaml"
FS = 8000
# Even smaller than the mini config: 16 filters, d_model 16, 2 heads, chunks of 10 frames.
SHRINK = [
    "--encoder_conf", "channel=16", "--decoder_conf", "channel=16",
    "--separator_conf", "d_model=16", "--separator_conf", "nhead=2",
    "--separator_conf", "dim_feedforward=32", "--separator_conf", "chunk_size=10",
]


def make_data_dir(path: Path, keys, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    scps = {name: [] for name in ("wav", "spk1", "spk2")}
    for key in keys:
        sources = rng.standard_normal((2, FS // 2)).astype(np.float32) * 0.1
        for name, samples in (("spk1", sources[0]), ("spk2", sources[1]), ("wav", sources.sum(0))):
            wav = path / "wavs" / f"{key}_{name}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(wav, samples, FS)
            scps[name].append(f"{key} {wav}\n")
    for name, lines in scps.items():
        (path / f"{name}.scp").write_text("".join(sorted(lines)))
    return path


def data_args(train: Path, valid: Path):
    args = []
    for split, path in (("train", train), ("valid", valid)):
        for scp, name in (("wav", "speech_mix"), ("spk1", "speech_ref1"), ("spk2", "speech_ref2")):
            args += [f"--{split}_data_path_and_name_and_type", f"{path}/{scp}.scp,{name},sound"]
    return args


def run_module(module: str, *args) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.integration
def test_train_one_epoch_then_separate(tmp_path):
    train = make_data_dir(tmp_path / "train", [f"tr{i}" for i in range(4)], seed=0)
    valid = make_data_dir(tmp_path / "valid", ["cv0", "cv1"], seed=1)
    stats, exp, decode = tmp_path / "stats", tmp_path / "exp", tmp_path / "decode"

    run_module(
        "sepalm_espnet.bin.sep_train", "--collect_stats", "true", "--config", MINI_CONFIG,
        *data_args(train, valid),
        "--train_shape_file", train / "wav.scp", "--valid_shape_file", valid / "wav.scp",
        "--output_dir", stats, *SHRINK,
    )
    shape_args = []
    for split in ("train", "valid"):
        for name in ("speech_mix", "speech_ref1", "speech_ref2"):
            shape_args += [f"--{split}_shape_file", stats / split / f"{name}_shape"]
    run_module(
        "sepalm_espnet.bin.sep_train", "--config", MINI_CONFIG, *data_args(train, valid), *shape_args,
        "--output_dir", exp, "--ngpu", "0", "--resume", "true", "--max_epoch", "1",
        "--chunk_length", "2000", "--batch_size", "2", "--num_att_plot", "0", *SHRINK,
    )
    model_file = exp / "valid.si_snr_loss.best.pth"
    assert model_file.is_file() and (exp / "config.yaml").is_file()

    run_module(
        "sepalm_espnet.bin.sep_inference", "--data_dir", valid, "--output_dir", decode,
        "--model_file", model_file, "--train_config", exp / "config.yaml", "--fs", FS,
        "--segment_sec", "0.3", "--hop_sec", "0.15",
    )
    for n in (1, 2):
        lines = (decode / f"spk{n}.scp").read_text().splitlines()
        assert [line.split()[0] for line in lines] == ["cv0", "cv1"]
        for line in lines:
            samples, fs = sf.read(line.split(maxsplit=1)[1])
            assert fs == FS and len(samples) == FS // 2 and np.all(np.isfinite(samples))
    # The per-estimate dir of stage 4: every estimate with the reference PIT matched to it.
    permutation = read_kv(decode / "permutation")
    references = read_kv(decode / "ref.scp")
    for utt, perm in permutation.items():
        for ref, est in enumerate(perm.split(), start=1):
            assert references[f"{utt}_spk{est}"] == read_kv(valid / f"spk{ref}.scp")[utt]
    assert set(read_kv(decode / "wav.scp")) == set(references)
