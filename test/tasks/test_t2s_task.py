"""TextToSemanticTask: the two YAMLs, one ESPnet training step, then t2s_inference on its output."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sepalm_espnet.data.kaldi_dir import read_kv
from sepalm_espnet.synthesizer.g2p import TokenList
from sepalm_espnet.synthesizer.t2s_model import TextToSemantic

REPO = Path(__file__).resolve().parents[2]
TUNING = REPO / "egs2/TEMPLATE/sepalm1/conf/tuning"
PHONEMES = {"utt0": "h ə l oʊ | w ɜː l d", "utt1": "t ɛ s t", "utt2": "h ɛ l p | m iː", "utt3": "oʊ"}
UNITS = {"utt0": [3, 17, 4, 4, 9], "utt1": [8, 2], "utt2": [1, 2, 3, 4, 5, 6, 7], "utt3": [0, 19, 5]}
UNIT_VOCAB = 20


@pytest.mark.parametrize("size, millions", [("mini", 0.368), ("paper", 45.21)])
def test_configs_build_their_models(size, millions):
    config = yaml.safe_load((TUNING / f"train_t2s_{size}.yaml").read_text())
    assert config["model"] == "transformer" and config["model_conf"]["unit_vocab_size"] == 1000
    with torch.device("meta"):
        model = TextToSemantic(phoneme_vocab_size=80, **config["model_conf"])
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, rel=0.01)


@pytest.mark.integration
def test_one_training_step_then_inference(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "phonemes").write_text("".join(f"{k} {v}\n" for k, v in PHONEMES.items()))
    (data / "units").write_text("".join(f"{k} {' '.join(map(str, v))}\n" for k, v in UNITS.items()))
    (data / "units_shape").write_text("".join(f"{k} {len(v)}\n" for k, v in UNITS.items()))
    TokenList.build(PHONEMES.values()).save(data / "tokens.txt")
    exp = tmp_path / "exp"
    args = [
        "--config", TUNING / "train_t2s_mini.yaml", "--token_list", data / "tokens.txt",
        f"--model_conf=unit_vocab_size={UNIT_VOCAB}", "--batch_size", "2",
        "--output_dir", exp, "--ngpu", "0", "--max_epoch", "1", "--num_iters_per_epoch", "1",
        "--use_matplotlib", "false", "--use_tensorboard", "false",
    ]
    for split in ("train", "valid"):
        args += [f"--{split}_data_path_and_name_and_type", f"{data / 'phonemes'},phonemes,text",
                 f"--{split}_data_path_and_name_and_type", f"{data / 'units'},units,text_int",
                 f"--{split}_shape_file", data / "units_shape"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "sepalm_espnet.bin.t2s_train", *map(str, args)], cwd=REPO, env=env,
                         text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["token_list"] == TokenList.from_file(data / "tokens.txt").tokens

    (data / "keys").write_text("utt1\nutt3\n")
    infer = [sys.executable, "-m", "sepalm_espnet.bin.t2s_inference", "--train_config", exp / "config.yaml",
             "--model_file", exp / "valid.acc.best.pth", "--phonemes", data / "phonemes", "--key_file", data / "keys",
             "--output_dir", tmp_path, "--max_length", "6"]
    run = subprocess.run(list(map(str, infer)), cwd=REPO, env=env, text=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    semantic = read_kv(tmp_path / "semantic")
    assert list(semantic) == ["utt1", "utt3"]
    for value in semantic.values():
        units = [int(u) for u in value.split()]
        assert 1 <= len(units) <= 6 and all(0 <= u < UNIT_VOCAB for u in units)
