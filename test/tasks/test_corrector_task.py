"""CorrectorTask: the preprocessor on ESPnet's text data, the collate, the tokenizer CLI, one training run."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from espnet2.tasks.abs_task import scheduler_classes
from transformers import LlamaConfig, LlamaForCausalLM

from sepalm_espnet.bin import train_tokenizer
from sepalm_espnet.corrector.prompt import EOA, IGNORE_INDEX, build_prompt
from sepalm_espnet.corrector.tokenizer import count_unit_tokens, load_tokenizer
from sepalm_espnet.corrector.units import KMeansQuantizer, save_kmeans
from sepalm_espnet.tasks.corrector import CorrectorCollateFn, CorrectorPreprocessor, CorrectorTask

REPO = Path(__file__).resolve().parents[2]
MINI_CONFIG = REPO / "egs2/TEMPLATE/sepalm1/conf/tuning/train_cor_tinyllama_mini.yaml"
PAPER_CONFIG = REPO / "egs2/TEMPLATE/sepalm1/conf/tuning/train_cor_speechgpt_paper.yaml"
N_UNITS = 16
UTTERANCES = {
    "utt1": ("3 1 4 1 5 9 2 6", "THE CAT SAT ON THE MAP", "THE CAT SAT ON THE MAT"),
    "utt2": ("2 7 1 8 2 8", "A DOG RAN", "A DOG RAN IN THE PARK"),
    "utt3": ("1 4 1 4 2 1", "SHE SOLD SEA SHELLS", "SHE SOLD SEA SHELLS"),
    "utt4": ("0 15 0 15", "", "HELLO"),
}


def write_data_dir(path: Path, utterances) -> Path:
    path.mkdir(parents=True)
    for column, name in enumerate(("units", "text_pt", "text_ct")):
        lines = [f"{key} {values[column]}".rstrip() + "\n" for key, values in sorted(utterances.items())]
        (path / name).write_text("".join(lines))
    return path


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    train = write_data_dir(root / "train", UTTERANCES)
    valid = write_data_dir(root / "valid", {key: UTTERANCES[key] for key in ("utt1", "utt2")})
    return train, valid


def kmeans_dir(path, n_clusters):
    """A k-means dir as stage 6 writes it: the tokenizer takes one token per cluster."""
    save_kmeans(path, KMeansQuantizer(np.random.default_rng(0).standard_normal((n_clusters, 4)).astype(np.float32)),
                "logmel", {"n_mels": 4})
    return path


@pytest.fixture(scope="module")
def tokenizer_dir(data_dirs, tmp_path_factory):
    train, _ = data_dirs
    output = tmp_path_factory.mktemp("exp") / "tokenizer"
    kmeans = kmeans_dir(tmp_path_factory.mktemp("kmeans"), N_UNITS)
    train_tokenizer.main(
        ["--text", str(train / "text_pt"), str(train / "text_ct"), "--kmeans_dir", str(kmeans),
         "--output_dir", str(output)]
    )
    return output


def test_tokenizer_cli_writes_a_loadable_unit_tokenizer(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    assert count_unit_tokens(tokenizer) == N_UNITS
    tokens = ["<sosp>", "<15>", "<eosp>", "▁", "<eoh>", EOA]
    assert tokenizer.tokenize(f"<sosp><15><eosp> <eoh>{EOA}") == tokens
    assert tokenizer.decode(tokenizer("THE CAT SAT ON THE MAT")["input_ids"], skip_special_tokens=True) == (
        "THE CAT SAT ON THE MAT"
    )


def test_tokenizer_cli_replaces_an_existing_tokenizer(data_dirs, tmp_path):
    train, _ = data_dirs
    for n_units in (4, 8):
        output = ["--output_dir", str(tmp_path / "tok")]
        kmeans = kmeans_dir(tmp_path / f"kmeans{n_units}", n_units)
        train_tokenizer.main(["--text", str(train / "text_ct"), "--kmeans_dir", str(kmeans), *output])
    assert count_unit_tokens(load_tokenizer(tmp_path / "tok")) == 8
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kmeans4", "kmeans8", "tok"]


def test_preprocessor_turns_espnet_text_into_ids_and_labels(tokenizer_dir):
    preprocess = CorrectorPreprocessor(train=True, tokenizer_dir=str(tokenizer_dir))
    units, preliminary, corrected = UTTERANCES["utt1"]
    # ESPnet's `text` loader gives the preprocessor the strings of each file.
    out = preprocess("utt1", {"units": units, "text_pt": preliminary, "text_ct": corrected})
    assert set(out) == {"input_ids", "labels"}
    assert out["input_ids"].dtype == np.int64 and out["input_ids"].shape == out["labels"].shape
    text = preprocess.tokenizer.decode(out["input_ids"], skip_special_tokens=True)
    assert text + "." == build_prompt([int(u) for u in units.split()], preliminary, corrected)
    assert (out["labels"] != IGNORE_INDEX).sum() > 0


def test_preprocessor_without_transcripts_gives_the_generation_prefix(tokenizer_dir):
    preprocess = CorrectorPreprocessor(train=False, tokenizer_dir=str(tokenizer_dir))
    out = preprocess("utt2", {"units": UTTERANCES["utt2"][0]})
    text = preprocess.tokenizer.decode(out["input_ids"], skip_special_tokens=True)
    assert text == build_prompt([2, 7, 1, 8, 2, 8]) and (out["labels"] == IGNORE_INDEX).all()


@pytest.mark.parametrize("units, message", [("1 x 3", "integers"), ("1 16 3", "outside")])
def test_preprocessor_names_the_utterance_of_bad_units(tokenizer_dir, units, message):
    preprocess = CorrectorPreprocessor(train=True, tokenizer_dir=str(tokenizer_dir))
    with pytest.raises(ValueError, match=f"utt9.*{message}"):
        preprocess("utt9", {"units": units, "text_pt": "A", "text_ct": "A"})


def test_collate_pads_ids_and_ignores_padded_labels():
    examples = [
        ("a", {"input_ids": np.array([1, 5, 6]), "labels": np.array([IGNORE_INDEX, 5, 6])}),
        ("b", {"input_ids": np.array([1, 7]), "labels": np.array([IGNORE_INDEX, 7])}),
    ]
    keys, batch = CorrectorCollateFn(pad_token_id=2)(examples)
    assert keys == ["a", "b"]
    assert batch["input_ids"].tolist() == [[1, 5, 6], [1, 7, 2]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 5, 6], [IGNORE_INDEX, 7, IGNORE_INDEX]]
    assert batch["input_ids_lengths"].tolist() == batch["labels_lengths"].tolist() == [3, 2]
    assert batch["input_ids"].dtype == torch.long


@pytest.mark.parametrize("config", [PAPER_CONFIG, MINI_CONFIG], ids=["paper", "mini"])
def test_config_builds_and_takes_a_training_step(config, tokenizer_dir, tmp_path):
    """What stage 7 builds from each config; the paper's 7B LM replaced by a tiny local one."""
    parser = CorrectorTask.get_parser()
    args = parser.parse_args(["--config", str(config), "--tokenizer_dir", str(tokenizer_dir)])
    tokenizer = load_tokenizer(tokenizer_dir)
    if "lm_name_or_path" in args.model_conf:
        tiny = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=32,
        )
        LlamaForCausalLM(tiny).save_pretrained(str(tmp_path / "lm"))
        args.model_conf["lm_name_or_path"] = str(tmp_path / "lm")
    model = CorrectorTask.build_model(args).to(getattr(torch, args.train_dtype))  # as ESPnet's main_worker
    (optimizer,) = CorrectorTask.build_optimizers(args, model)
    scheduler = scheduler_classes[args.scheduler](optimizer, **args.scheduler_conf)

    preprocess = CorrectorTask.build_preprocess_fn(args, train=True)
    columns = ("units", "text_pt", "text_ct")
    examples = [(key, preprocess(key, dict(zip(columns, UTTERANCES[key])))) for key in ("utt1", "utt4")]
    _, batch = CorrectorTask.build_collate_fn(args, train=True)(examples)
    loss, stats, _ = model(**batch)
    loss.backward()
    optimizer.step()
    scheduler.step()
    assert torch.isfinite(loss).all() and torch.isfinite(stats["loss_ger"]).all()


def test_paper_config_matches_section_4_2():
    config = yaml.safe_load(PAPER_CONFIG.read_text())
    conf = config["model_conf"]
    assert config["model"] == "audio_lm" and conf["use_lora"] and conf["lora_rank"] == 8
    assert conf["lora_target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert config["optim"] == "adamw" and config["optim_conf"]["lr"] == 2.0e-4
    assert config["max_epoch"] == 5 and config["batch_size"] * config["accum_grad"] == 128


def run_module(module: str, *args) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stderr


def data_args(train: Path, valid: Path):
    args = []
    for split, path in (("train", train), ("valid", valid)):
        for name in ("units", "text_pt", "text_ct"):
            args += [f"--{split}_data_path_and_name_and_type", f"{path}/{name},{name},text"]
    return args


def write_units_shape(data_dir: Path) -> Path:
    """`key n_units`: the length that dominates a prompt, enough to sort batches by.

    ESPnet's --collect_stats would measure input_ids exactly, but its streaming reader refuses
    the `key` lines of empty transcripts, which teacher transcripts of separated speech have.
    """
    fields = [line.split() for line in (data_dir / "units").read_text().splitlines()]
    (data_dir / "units_shape").write_text("".join(f"{key} {len(units)}\n" for key, *units in fields))
    return data_dir / "units_shape"


@pytest.mark.integration
def test_one_espnet_training_epoch(data_dirs, tokenizer_dir, tmp_path):
    """One epoch of the mini config, shrunk, through ESPnet's trainer (empty transcript included)."""
    train, valid = data_dirs
    exp = tmp_path / "exp"
    log = run_module(
        "sepalm_espnet.bin.cor_train", "--config", MINI_CONFIG, "--tokenizer_dir", tokenizer_dir,
        *data_args(train, valid), "--train_shape_file", write_units_shape(train),
        "--valid_shape_file", write_units_shape(valid), "--output_dir", exp, "--ngpu", "0",
        "--max_epoch", "1", "--batch_size", "2",
        "--model_conf", "lm_config={hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, "
        "num_key_value_heads: 2, intermediate_size: 32}",
    )
    assert (exp / "valid.acc.best.pth").is_file()
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["model"] == "audio_lm" and config["model_conf"]["lm_config"]["hidden_size"] == 16
    summary = next(line for line in log.splitlines() if "1epoch results" in line)
    for name in ("loss_asr", "loss_ger", "acc_asr", "acc_ger"):
        assert f"{name}=" in summary
    assert "nan" not in summary
