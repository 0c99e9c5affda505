"""Fixtures shared by the test folders (pytest reads this conftest for every test below it)."""
from pathlib import Path

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


# SpeechBrain's SepFormer as its hub inference files describe it (speechbrain/sepformer-whamr16k).
SPEECHBRAIN_HPARAMS = """\
sample_rate: {sample_rate}
num_spks: {spks}

Encoder: !new:speechbrain.lobes.models.dual_path.Encoder
    kernel_size: {kernel}
    out_channels: {channels}

SBtfintra: !new:speechbrain.lobes.models.dual_path.SBTransformerBlock
    num_layers: {layers}
    d_model: {d_model}
    nhead: {nhead}
    d_ffn: {d_ffn}
    dropout: 0
    use_positional_encoding: true
    norm_before: true

SBtfinter: !new:speechbrain.lobes.models.dual_path.SBTransformerBlock
    num_layers: {layers}
    d_model: {d_model}
    nhead: {nhead}
    d_ffn: {d_ffn}
    dropout: 0
    use_positional_encoding: true
    norm_before: true

MaskNet: !new:speechbrain.lobes.models.dual_path.Dual_Path_Model
    num_spks: !ref <num_spks>
    in_channels: {channels}
    out_channels: {d_model}
    num_layers: {blocks}
    K: {K}
    intra_model: !ref <SBtfintra>
    inter_model: !ref <SBtfinter>
    norm: ln
    linear_layer_after_inter_intra: false
    skip_around_intra: true

Decoder: !new:speechbrain.lobes.models.dual_path.Decoder
    in_channels: {channels}
    out_channels: 1
    kernel_size: {kernel}
    stride: {stride}
    bias: false

modules:
    encoder: !ref <Encoder>
    decoder: !ref <Decoder>
    masknet: !ref <MaskNet>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        encoder: !ref <Encoder>
        masknet: !ref <MaskNet>
        decoder: !ref <Decoder>
"""


def speechbrain_modules(channels, kernel, d_model, nhead, d_ffn, layers, blocks, K, spks, seed=0):
    """SpeechBrain's SepFormer, its weights (norms and biases too) away from their initial values."""
    from speechbrain.lobes.models import dual_path

    torch.manual_seed(seed)

    def block():
        return dual_path.SBTransformerBlock(layers, d_model, nhead, d_ffn=d_ffn, dropout=0,
                                            use_positional_encoding=True, norm_before=True)

    modules = {
        "encoder": dual_path.Encoder(kernel_size=kernel, out_channels=channels),
        "masknet": dual_path.Dual_Path_Model(channels, d_model, block(), block(), num_layers=blocks, K=K,
                                             num_spks=spks, linear_layer_after_inter_intra=False),
        "decoder": dual_path.Decoder(in_channels=channels, out_channels=1, kernel_size=kernel,
                                     stride=kernel // 2, bias=False),
    }
    with torch.no_grad():
        for module in modules.values():
            for param in module.parameters():
                param.add_(0.05 * torch.randn_like(param))
    return modules


@pytest.fixture(scope="session")
def speechbrain_sepformer():
    """make(directory, sizes, sample_rate=16000, edit=None): SpeechBrain's own SepFormer (random
    weights) saved in its hub layout, hyperparams.yaml passed through `edit`; returns the modules."""

    def make(directory, sizes, sample_rate=16000, edit=None, seed=0):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        modules = speechbrain_modules(**sizes, seed=seed)
        for name, module in modules.items():
            torch.save(module.state_dict(), directory / f"{name}.ckpt")
        text = SPEECHBRAIN_HPARAMS.format(sample_rate=sample_rate, stride=sizes["kernel"] // 2, **sizes)
        (directory / "hyperparams.yaml").write_text(edit(text) if edit else text)
        return modules

    return make
