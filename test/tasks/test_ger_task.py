"""GerTask (Table 3 (e)): the preprocessor on ESPnet's text data, the configs, one ESPnet training run
decoded by bin/cascade_correct's fine-tuned path."""
import json
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

from sepalm_espnet.bin import cascade_correct
from sepalm_espnet.corrector.cascade import GerCorrector
from sepalm_espnet.corrector.generate import STATUSES
from sepalm_espnet.corrector.ger_model import GER_PROMPT, LINE_END, build_ger_prompt, split_nbest
from sepalm_espnet.corrector.prompt import IGNORE_INDEX
from sepalm_espnet.corrector.tokenizer import save_tokenizer, train_sentencepiece_tokenizer
from sepalm_espnet.data.kaldi_dir import read_text
from sepalm_espnet.tasks.ger import GerPreprocessor, GerTask

REPO = Path(__file__).resolve().parents[2]
TUNING = REPO / "egs2/TEMPLATE/sepalm1/conf/tuning"
MINI_CONFIG, PAPER_CONFIG = TUNING / "train_ger_tinyllama_mini.yaml", TUNING / "train_ger_paper.yaml"
UTTERANCES = {  # nbest as cascade_correct writes it (an empty hypothesis included), text_ct
    "utt1": ("THE CAT SAT ON THE MAP ||| THE CAT SAT ON A MAT ||| A CAT SAT ON THE MAP", "THE CAT SAT ON THE MAT"),
    "utt2": ("A DOG RAN ||| ||| A DOG RAN IN", "A DOG RAN IN THE PARK"),
}
TINY_LM = "lm_config={hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2, " \
          "intermediate_size: 32}"


def write_data_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    for column, name in enumerate(("nbest", "text_ct")):
        (path / name).write_text("".join(f"{key} {values[column]}\n" for key, values in sorted(UTTERANCES.items())))
    return path


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    texts = [text for nbest, target in UTTERANCES.values() for text in (*split_nbest(nbest), target)]
    path = tmp_path_factory.mktemp("ger_tok") / "tokenizer"
    save_tokenizer(train_sentencepiece_tokenizer(texts + [GER_PROMPT]), path)
    return path


def test_nbest_lines_split_back_into_their_hypotheses():
    assert split_nbest("A DOG RAN |||  ||| A  DOG RAN IN") == ["A DOG RAN", "", "A DOG RAN IN"]
    assert split_nbest("ONLY ONE") == ["ONLY ONE"]


def test_preprocessor_learns_only_the_target_line(tokenizer_dir):
    preprocess = GerPreprocessor(train=True, tokenizer_dir=str(tokenizer_dir))
    nbest, target = UTTERANCES["utt2"]
    out = preprocess("utt2", {"nbest": nbest, "text_ct": target})  # ESPnet's `text` loader gives strings
    assert out["input_ids"].dtype == np.int64 and out["input_ids"].shape == out["labels"].shape
    learned = out["labels"] != IGNORE_INDEX
    n_prompt = int(np.argmax(learned))
    assert learned[n_prompt:].all()  # the target is one span at the end
    prompt_ids = preprocess.tokenizer(build_ger_prompt(["A DOG RAN", "", "A DOG RAN IN"]))["input_ids"]
    assert out["input_ids"][:n_prompt].tolist() == prompt_ids  # exactly what inference tokenizes
    assert preprocess.tokenizer.decode(out["labels"][learned]).strip(" ") == target + LINE_END

    inference = preprocess("utt2", {"nbest": nbest})
    assert inference["input_ids"].tolist() == prompt_ids and (inference["labels"] == IGNORE_INDEX).all()


@pytest.mark.parametrize("config", [PAPER_CONFIG, MINI_CONFIG], ids=["paper", "mini"])
def test_config_builds_and_takes_a_training_step(config, tokenizer_dir, tmp_path):
    """What the recipe builds from each config; the paper's 7B LM replaced by a tiny local one."""
    args = GerTask.get_parser().parse_args(["--config", str(config), "--tokenizer_dir", str(tokenizer_dir)])
    preprocess = GerTask.build_preprocess_fn(args, train=True)
    if "lm_name_or_path" in args.model_conf:
        tiny = LlamaConfig(vocab_size=len(preprocess.tokenizer), hidden_size=16, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=32)
        LlamaForCausalLM(tiny).save_pretrained(str(tmp_path / "lm"))
        args.model_conf["lm_name_or_path"] = str(tmp_path / "lm")
    model = GerTask.build_model(args).to(getattr(torch, args.train_dtype))  # as ESPnet's main_worker
    (optimizer,) = GerTask.build_optimizers(args, model)
    scheduler = scheduler_classes[args.scheduler](optimizer, **args.scheduler_conf)
    examples = [(key, preprocess(key, dict(nbest=nbest, text_ct=target)))
                for key, (nbest, target) in UTTERANCES.items()]
    _, batch = GerTask.build_collate_fn(args, train=True)(examples)
    loss, stats, weight = model(**batch)
    loss.backward()
    optimizer.step()
    scheduler.step()
    assert torch.isfinite(loss) and int(weight) == 2 and 0.0 <= float(stats["line_acc"]) <= 1.0


def test_paper_config_is_the_correctors_lora_recipe():
    config = yaml.safe_load(PAPER_CONFIG.read_text())
    conf = config["model_conf"]
    assert config["model"] == "ger_lora" and conf["use_lora"] and conf["lora_rank"] == 8
    assert conf["lora_target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert config["optim"] == "adamw" and config["optim_conf"]["lr"] == 2.0e-4
    assert config["max_epoch"] == 5 and config["batch_size"] * config["accum_grad"] == 128


def run_module(module: str, *args) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stderr


def read_nbest_lists(path: Path) -> dict:
    return {key: split_nbest(value) for key, value in read_text(path).items()}


def write_shape(data_dir: Path) -> Path:
    """`key n`: hypothesis words, enough for `batch_type: sorted` (the recipe measures input_ids)."""
    lines = [line.split(maxsplit=1) for line in (data_dir / "nbest").read_text().splitlines()]
    (data_dir / "nbest_shape").write_text("".join(f"{key} {len(value.split())}\n" for key, value in lines))
    return data_dir / "nbest_shape"


@pytest.mark.integration
def test_one_espnet_epoch_then_cascade_correct_decodes_the_checkpoint(tokenizer_dir, tmp_path):
    train, valid = write_data_dir(tmp_path / "train"), write_data_dir(tmp_path / "valid")
    data = [f"--{split}_data_path_and_name_and_type={path}/{name},{name},text"
            for split, path in (("train", train), ("valid", valid)) for name in ("nbest", "text_ct")]
    exp = tmp_path / "exp"
    log = run_module("sepalm_espnet.bin.ger_train", "--config", MINI_CONFIG, "--tokenizer_dir", tokenizer_dir,
                     *data, "--train_shape_file", write_shape(train), "--valid_shape_file", write_shape(valid),
                     "--output_dir", exp, "--ngpu", "0", "--max_epoch", "1", "--batch_size", "2",
                     "--model_conf", TINY_LM)
    summary = next(line for line in log.splitlines() if "1epoch results" in line)
    assert "line_acc=" in summary and "nan" not in summary, summary
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["model"] == "ger_lora" and config["model_conf"]["lm_config"]["hidden_size"] == 16
    assert (exp / "valid.loss.best.pth").is_file()

    out = tmp_path / "decode/logdir/output.1"
    cascade_correct.main(["--nbest_scp", str(valid / "nbest"), "--lm_train_config", str(exp / "config.yaml"),
                          "--lm_model_file", str(exp / "valid.loss.best.pth"), "--max_new_tokens", "8",
                          "--output_dir", str(out)])
    assert read_nbest_lists(out / "nbest") == read_nbest_lists(valid / "nbest")
    assert read_text(out / "text_pt") == {key: split_nbest(nbest)[0] for key, (nbest, _) in UTTERANCES.items()}
    statuses = read_text(out / "status")
    assert sorted(statuses) == sorted(UTTERANCES) and set(statuses.values()) <= set(STATUSES)
    counts = json.loads((out / "fallback.json").read_text())
    assert sum(counts.values()) == len(UTTERANCES)

    # The same checkpoint through the library call gives the same lines.
    corrector = GerCorrector.from_trained(None, exp / "valid.loss.best.pth", max_new_tokens=8)
    corrections = corrector.correct([split_nbest(nbest) for nbest, _ in UTTERANCES.values()])
    assert {key: c.corrected for key, c in zip(UTTERANCES, corrections)} == read_text(out / "text_ct")


@pytest.mark.parametrize("options, message", [
    (["--lm", "x", "--lm_model_file", "y"], "give --lm"),
    ([], "give --lm"),
    (["--nbest_only", "true", "--lm", "x"], "give --lm"),
])
def test_cascade_correct_wants_one_lm_or_nbest_only(options, message, tmp_path, capsys):
    (tmp_path / "nbest").write_text("utt1 A ||| B\n")
    with pytest.raises(SystemExit):
        cascade_correct.main(["--nbest_scp", str(tmp_path / "nbest"), "--output_dir", str(tmp_path / "out"),
                              *options])
    assert message in capsys.readouterr().err
