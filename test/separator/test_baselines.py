"""The paper's separator baselines (Conv-TasNet, DPRNN) and TF-GridNet as configs of stage 3:
ESPnet's own separators, each config's parameter count as its header states it, and the mini
sizes through the training call and the stage 4 worker, as the SepFormer goes."""
import argparse
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from sepalm_espnet.bin import sep_inference
from sepalm_espnet.data.kaldi_dir import read_kv
from sepalm_espnet.separator.registry import EnhancementTask

CONF_DIR = Path(__file__).resolve().parents[2] / "egs2/TEMPLATE/sepalm1/conf/tuning"
BASELINES = ["conv_tasnet", "dprnn", "tfgridnet"]
SEPARATORS = {"conv_tasnet": "tcn", "dprnn": "dprnn", "tfgridnet": "tfgridnetv2"}
FS = 8000

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config_of(path: Path) -> dict:
    config = vars(EnhancementTask.get_parser().parse_args([]))
    config.update(yaml.safe_load(path.read_text()))
    return config


@pytest.mark.parametrize("size", ["paper", "mini"])
@pytest.mark.parametrize("name", BASELINES)
def test_parameter_count_is_the_one_the_config_states(name, size):
    path = CONF_DIR / f"train_sep_{name}_{size}.yaml"
    stated = int(re.search(r"([\d,]+) parameters", path.read_text()).group(1).replace(",", ""))
    config = config_of(path)
    assert config["separator"] == SEPARATORS[name]
    with torch.device("meta"):
        model = EnhancementTask.build_model(argparse.Namespace(**config))
    assert sum(p.numel() for p in model.parameters()) == stated


@pytest.mark.parametrize("name", BASELINES)
def test_mini_baseline_trains_and_the_stage_4_worker_separates_with_it(name, tmp_path):
    config = config_of(CONF_DIR / f"train_sep_{name}_mini.yaml")
    torch.manual_seed(0)
    model = EnhancementTask.build_model(argparse.Namespace(**config))
    rng = np.random.default_rng(0)
    sources = [0.1 * rng.standard_normal((2, FS // 2)).astype(np.float32) for _ in range(2)]
    batch = dict(speech_mix=torch.from_numpy(sources[0] + sources[1]), speech_mix_lengths=torch.full((2,), FS // 2),
                 speech_ref1=torch.from_numpy(sources[0]), speech_ref2=torch.from_numpy(sources[1]))
    loss, stats, weight = model(**batch)  # the call ESPnet's trainer makes
    loss.backward()
    assert torch.isfinite(loss) and int(weight) == 2
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)

    data = tmp_path / "data"
    data.mkdir()
    scps = {"wav": {}, "spk1": {}, "spk2": {}}
    for index in range(2):
        for scp, signal in (("spk1", sources[0][index]), ("spk2", sources[1][index]),
                            ("wav", sources[0][index] + sources[1][index])):
            sf.write(data / f"m{index}_{scp}.wav", signal, FS, subtype="FLOAT")
            scps[scp][f"m{index}"] = data / f"m{index}_{scp}.wav"
    for scp, entries in scps.items():
        (data / f"{scp}.scp").write_text("".join(f"{k} {v}\n" for k, v in entries.items()))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    sep_inference.main(["--data_dir", str(data), "--output_dir", str(tmp_path / "decode"), "--fs", str(FS),
                        "--model_file", str(tmp_path / "model.pth"), "--train_config", str(tmp_path / "config.yaml")])
    estimates = read_kv(tmp_path / "decode/wav.scp")
    assert sorted(estimates) == ["m0_spk1", "m0_spk2", "m1_spk1", "m1_spk2"]
    for path in estimates.values():
        estimate, fs = sf.read(path, dtype="float32")
        assert fs == FS and estimate.shape == (FS // 2,) and np.isfinite(estimate).all()
