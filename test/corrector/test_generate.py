"""Two-step corrector decoding on a tiny LLaMA that has learned two answers, the CLI and its merge."""
import json

import numpy as np
import pytest
import torch
import yaml

from sepalm_espnet.bin.cor_inference import main as cor_inference_main
from sepalm_espnet.utils.job_outputs import merge_job_outputs
from sepalm_espnet.corrector.generate import (
    FALLBACK_PRELIMINARY,
    FALLBACK_TEACHER,
    PARSED,
    Correction,
    CorrectorGenerator,
)
from sepalm_espnet.corrector.model import AudioLMCorrector
from sepalm_espnet.corrector.prompt import encode_prompt
from sepalm_espnet.corrector.tokenizer import load_tokenizer
from sepalm_espnet.data.kaldi_dir import read_text, write_kv
from sepalm_espnet.tasks.corrector import CorrectorCollateFn

N_UNITS = 10
LEARNED = {  # units, preliminary, corrected
    "utt1": ([3, 1, 4, 1, 5], "THE CAT SAT ON THE MAP", "THE CAT SAT ON THE MAT"),
    "utt2": ([2, 7, 1, 8, 2, 8, 6], "A DOG RAN", "A DOG RAN IN THE PARK"),
}
UNSEEN = [[9, 9, 0], [5, 6, 7, 8, 9, 0, 1, 2, 3]]
LM_CONFIG = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                 intermediate_size=64)
GREEDY = dict(do_sample=False)


@pytest.fixture(scope="module")
def tokenizer_dir(make_tokenizer_dir):
    return make_tokenizer_dir([text for _, *texts in LEARNED.values() for text in texts], N_UNITS)


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="module")
def corrector(tokenizer):
    """Trained until it answers both learned utterances exactly (a few dozen Adam steps)."""
    torch.manual_seed(0)
    model = AudioLMCorrector(len(tokenizer), lm_config=LM_CONFIG, use_lora=False)
    examples = []
    for key, (units, preliminary, corrected) in LEARNED.items():
        encoded = encode_prompt(tokenizer, units, preliminary, corrected)
        examples.append((key, {"input_ids": np.array(encoded.input_ids), "labels": np.array(encoded.labels)}))
    _, batch = CorrectorCollateFn(tokenizer.eos_token_id)(examples)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss, _, _ = model(**batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def learned_units():
    return [units for units, _, _ in LEARNED.values()]


def step_prompt_length(tokenizer, key, step):
    units, preliminary, _ = LEARNED[key]
    return len(encode_prompt(tokenizer, units, preliminary if step == 2 else None).input_ids)


def test_two_step_generation_gives_both_learned_transcripts(corrector, tokenizer):
    generator = CorrectorGenerator(corrector, tokenizer, **GREEDY)
    corrections = generator.correct(learned_units() + [[]], teacher=["x", "y", "hello, world!"])
    assert corrections == [
        Correction(preliminary, corrected, PARSED) for _, preliminary, corrected in LEARNED.values()
    ] + [Correction("HELLO WORLD", "HELLO WORLD", FALLBACK_TEACHER)]


def test_paper_sampling_is_seeded(corrector, tokenizer):
    generator = CorrectorGenerator(corrector, tokenizer, batch_size=2)  # top-k 40, top-p 0.9, T 0.1
    units = learned_units() + UNSEEN
    first = generator.correct(units)
    assert first[:2] == [Correction(p, c, PARSED) for _, p, c in LEARNED.values()]
    assert generator.correct(units) == first


def test_batched_and_cached_decoding_equal_one_at_a_time_without_cache(corrector, tokenizer):
    units = UNSEEN + learned_units()
    reference = CorrectorGenerator(corrector, tokenizer, batch_size=1, use_cache=False, **GREEDY).correct(units)
    for options in (dict(batch_size=3), dict(batch_size=8, use_cache=False), dict(batch_size=1)):
        assert CorrectorGenerator(corrector, tokenizer, **options, **GREEDY).correct(units) == reference, options


def test_length_limit_falls_back_to_preliminary_then_teacher(corrector, tokenizer):
    # Room for the whole preliminary transcript but not for the corrected one's <eoa>.
    max_length = step_prompt_length(tokenizer, "utt1", 2) + 2
    generator = CorrectorGenerator(corrector, tokenizer, max_length=max_length, **GREEDY)
    [utt1] = generator.correct([LEARNED["utt1"][0]], teacher=["teacher words"])
    assert utt1 == Correction("THE CAT SAT ON THE MAP", "THE CAT SAT ON THE MAP", FALLBACK_PRELIMINARY)

    # The preliminary transcript never reaches its full stop.
    max_length = step_prompt_length(tokenizer, "utt1", 1) + 2
    generator = CorrectorGenerator(corrector, tokenizer, max_length=max_length, **GREEDY)
    assert generator.correct([LEARNED["utt1"][0]], teacher=["teacher words"]) == [
        Correction("TEACHER WORDS", "TEACHER WORDS", FALLBACK_TEACHER)
    ]
    assert generator.correct([LEARNED["utt1"][0]]) == [Correction("", "", FALLBACK_TEACHER)]


def test_zero_shot_needs_a_lora_corrector(corrector, tokenizer):
    with pytest.raises(ValueError, match="zero-shot.*LoRA"):
        CorrectorGenerator(corrector, tokenizer, zero_shot=True)


@pytest.fixture(scope="module")
def lora_corrector(corrector, tokenizer, tmp_path_factory):
    """The trained LM as the pretrained base of a LoRA corrector whose adapter has non-zero weights."""
    lm_dir = tmp_path_factory.mktemp("lm") / "lm"
    corrector.lm.save_pretrained(str(lm_dir))
    model_conf = dict(lm_name_or_path=str(lm_dir), use_lora=True, lora_rank=4)
    torch.manual_seed(1)
    model = AudioLMCorrector(len(tokenizer), **model_conf)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0.0, 1.0)
    return model.eval(), model_conf


def test_zero_shot_disables_the_adapter(corrector, lora_corrector, tokenizer):
    model, _ = lora_corrector
    units = learned_units()
    base = CorrectorGenerator(corrector, tokenizer, **GREEDY).correct(units)
    assert CorrectorGenerator(model, tokenizer, zero_shot=True, **GREEDY).correct(units) == base
    # (a short limit: the disturbed LM tends to run on)
    assert CorrectorGenerator(model, tokenizer, max_length=120, **GREEDY).correct(units) != base


def write_experiment(directory, model, model_conf, tokenizer_dir):
    """config.yaml + weights as ESPnet's trainer leaves them (a LoRA state dict lacks the frozen LM)."""
    directory.mkdir()
    config = dict(model="audio_lm", model_conf=model_conf, tokenizer_dir=str(tokenizer_dir))
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(model.state_dict(), directory / "valid.acc.best.pth")
    return directory / "config.yaml", directory / "valid.acc.best.pth"


def test_cli_decodes_job_splits_and_merges_them(lora_corrector, corrector, tokenizer, tokenizer_dir, tmp_path):
    model, model_conf = lora_corrector
    config, weights = write_experiment(tmp_path / "exp", model, model_conf, tokenizer_dir)
    units = {"utt1": "3 1 4 1 5", "utt2": "2 7 1 8 2 8 6", "utt3": ""}
    write_kv(tmp_path / "units", units)
    write_kv(tmp_path / "teacher", {"utt1": "a", "utt2": "b", "utt3": "silence?"})
    write_kv(tmp_path / "logdir/keys.1.scp", {"utt2": "x", "utt3": "x"})
    write_kv(tmp_path / "logdir/keys.2.scp", {"utt1": "x"})
    common = ["--train_config", str(config), "--model_file", str(weights), "--units", str(tmp_path / "units"),
              "--teacher_text", str(tmp_path / "teacher"), "--do_sample", "false", "--zero_shot", "true"]
    for job in (1, 2):
        cor_inference_main([*common, "--key_file", str(tmp_path / f"logdir/keys.{job}.scp"),
                            "--output_dir", str(tmp_path / f"logdir/output.{job}")])
    assert read_text(tmp_path / "logdir/output.1/status") == {"utt2": PARSED, "utt3": FALLBACK_TEACHER}
    merge_job_outputs(tmp_path, 2)  # the recipe's merger
    # Zero-shot on this LoRA corrector is the trained LM, which learned both answers.
    assert read_text(tmp_path / "text_pt") == {"utt1": "THE CAT SAT ON THE MAP", "utt2": "A DOG RAN",
                                                "utt3": "SILENCE"}
    assert read_text(tmp_path / "text_ct") == {"utt1": "THE CAT SAT ON THE MAT",
                                                "utt2": "A DOG RAN IN THE PARK", "utt3": "SILENCE"}
    assert json.loads((tmp_path / "fallback.json").read_text()) == {
        PARSED: 2, FALLBACK_PRELIMINARY: 0, FALLBACK_TEACHER: 1}
    assert (tmp_path / "text_ct").read_text().splitlines()[0] == "utt1 THE CAT SAT ON THE MAT"


def test_cli_names_the_teacher_file_missing_a_key(tokenizer_dir, corrector, tmp_path):
    _, weights = write_experiment(tmp_path / "exp", corrector, dict(lm_config=LM_CONFIG, use_lora=False),
                                  tokenizer_dir)
    write_kv(tmp_path / "units", {"utt1": "3 1 4", "utt2": "2 7"})
    write_kv(tmp_path / "teacher", {"utt1": "a"})
    with pytest.raises(SystemExit, match=r"cor_inference: .*teacher: no transcript for key 'utt2'"):
        cor_inference_main(["--model_file", str(weights), "--units",  # config.yaml found beside the weights
                            str(tmp_path / "units"), "--teacher_text", str(tmp_path / "teacher"),
                            "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
