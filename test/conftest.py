"""Fixtures shared by the test folders (pytest reads this conftest for every test below it)."""
import numpy as np
import pytest
import torch

SEPARATOR_CONFIG = "egs2/TEMPLATE/sepalm1/conf/tuning/train_sep_sepformer_mini.yaml"
SEPARATOR_CHECKPOINT = "valid.si_snr_loss.ave.pth"
# Even smaller than the mini config: 16 filters, d_model 16, 2 heads, chunks of 10 frames.
SHRINK_SEPARATOR = [
    "--encoder_conf", "channel=16", "--decoder_conf", "channel=16",
    "--separator_conf", "d_model=16", "--separator_conf", "nhead=2",
    "--separator_conf", "dim_feedforward=32", "--separator_conf", "chunk_size=10",
]


def voiced_sound(num_samples: int, seed: int, fs: int = 16000) -> np.ndarray:
    """A speech-like voiced sound: a wobbling f0 with 3 formants, syllable-rate amplitude.

    Learnability tests need audio with speech's structure (harmonics, formants, syllables)
    that no download can give them."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / fs
    f0 = 100 + 120 * rng.random() + 20 * np.sin(2 * np.pi * (2 + 3 * rng.random()) * t)
    phase = 2 * np.pi * np.cumsum(f0) / fs
    formants = 300 + 2500 * rng.random(3)
    wave = np.zeros(num_samples)
    for k in range(1, 30):
        gain = sum(np.exp(-(((k * f0) - f) / 150) ** 2) for f in formants) + 0.05
        wave += gain / np.sqrt(k) * np.sin(k * phase) * (k * f0 < fs / 2 - 500)
    wave *= 0.5 - 0.5 * np.cos(2 * np.pi * (3 + 2 * rng.random()) * t)
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


@pytest.fixture(scope="session")
def voiced():
    """voiced(num_samples, seed, fs=16000) -> float32 speech-like sound."""
    return voiced_sound


@pytest.fixture
def one_torch_thread():
    """Training tests on one thread: the same figures on every machine, and no oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def separator_experiment(tmp_path_factory):
    """An untrained tiny SepFormer as ESPnet's trainer leaves an experiment dir: config.yaml
    (all args) + a state dict; (dir, model)."""
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    from sepalm_espnet.separator.registry import EnhancementTask

    exp = tmp_path_factory.mktemp("exp_sep")
    args = EnhancementTask.get_parser().parse_args([
        "--config", SEPARATOR_CONFIG, *SHRINK_SEPARATOR, "--sample_rate", "16000", "--output_dir", str(exp),
        "--train_data_path_and_name_and_type", f"{exp}/train/wav.scp,speech_mix,sound",
        "--train_shape_file", f"{exp}/stats/speech_mix_shape",
    ])
    with open(exp / "config.yaml", "w", encoding="utf-8") as f:
        yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
    torch.manual_seed(0)
    model = EnhancementTask.build_model(args).eval()
    torch.save(model.state_dict(), exp / SEPARATOR_CHECKPOINT)
    return exp, model


@pytest.fixture(scope="session")
def separator_archive(separator_experiment, tmp_path_factory):
    """separator_experiment packed as a separator-only model-zoo archive."""
    from sepalm_espnet import zoo

    exp, _ = separator_experiment
    components = {"separator": {"config": exp / "config.yaml", "model": exp / SEPARATOR_CHECKPOINT}}
    return zoo.pack(tmp_path_factory.mktemp("packed") / "sep.zip", components)
