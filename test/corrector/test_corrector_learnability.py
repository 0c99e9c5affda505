"""Learnability: a LoRA corrector that has learned 4 utterances answers all of them, both steps.

End to end through the paths the recipe takes:
- the tokenizer: a SentencePiece BPE trained on the transcripts plus the unit tokens, saved as a
  directory (`--tokenizer_dir`);
- the model: `CorrectorTask.build_model` with the paper's LoRA options (r 8 on q, k, v, o) on a
  tiny local "pretrained" LLaMA that, like SpeechGPT, lacks <eoa>, so its rows train with the
  adapter;
- the batches: ESPnet's text strings through the task's preprocessor and collate (right-padded);
- training: `loss, stats, weight = model(**batch)` with `utt_id` in the batch, as ESPnet's
  trainer calls it (AdamW, grad clip 1, the recipe's optimiser);
- inference: the trainer's state dict (frozen LM left out) and config.yaml reloaded by
  `CorrectorGenerator.from_files`, two-step greedy decoding of all 4 utterances in ONE batch,
  left-padded: the 4 prompts differ in length at step I and at step II.
Every preliminary and corrected transcript must come back exactly, with status `parsed` (no
fallback), and the two prompts each utterance is decoded from must be, token for token, the
prefixes of its training sequence that precede its two learned spans (a model that has memorised
4 answers shrugs off small prompt drifts, e.g. a missing BOS, so the outputs alone would not show
them); with the adapter disabled (zero-shot) the same inputs must decode differently.

The base LM is random, but initialised wider than transformers' default (std 0.3, not 0.02):
with std 0.02 its frozen lm_head gives near-uniform logits that adapters on attention cannot
sharpen, so greedy decoding would hang on margins of a few thousandths, not on what was learned.
"""
import argparse
import time

import pytest
import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM

from sepalm_espnet.corrector.generate import PARSED, CorrectorGenerator
from sepalm_espnet.corrector.prompt import CORRECTED_SPAN, PRELIMINARY_SPAN, label_spans
from sepalm_espnet.corrector.tokenizer import load_tokenizer
from sepalm_espnet.tasks.corrector import CorrectorTask

N_UNITS = 12
EXAMPLES = {  # ESPnet text columns: units, text_pt (preliminary), text_ct (corrected); distinct sentences
    "utt1": ("3 1 4 1 5", "THE CAT SAT ON THE MAP", "THE CAT SAT ON THE MAT"),
    "utt2": ("2 7 1 8 2 8 1", "A DOG RAN", "A DOG RAN IN THE PARK"),
    "utt3": ("9 9 0 11 6 5 4 3 2", "SHE SOLD SEA SHELLS BY THE SHORE", "SHE SELLS SEA SHELLS BY THE SHORE"),
    "utt4": ("10 0 10 0 6 6 7 7 8 8 1", "BIRDS FLY SOUTH", "BIRDS FLY SOUTH IN WINTER"),
}
BASE_LM = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               intermediate_size=128, initializer_range=0.3)
LORA = dict(use_lora=True, lora_rank=8, lora_alpha=16, lora_dropout=0.05,
            lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])  # train_cor_speechgpt_paper.yaml
LEARNING_RATE = 1e-2
MAX_STEPS = 300  # converges in ~80
CONVERGED_LOSS = 0.05  # L_asr + L_ger, with teacher-forced token accuracy 1
# Greedy, all 4 in one left-padded batch; 128 tokens hold every answer (the longest training sequence is 80).
DECODE = dict(do_sample=False, batch_size=len(EXAMPLES), max_length=128)


def unit_lists():
    return [[int(unit) for unit in units.split()] for units, _, _ in EXAMPLES.values()]


@pytest.fixture(scope="module")
def tokenizer_dir(make_tokenizer_dir):
    return make_tokenizer_dir([text for _, *texts in EXAMPLES.values() for text in texts], N_UNITS)


@pytest.fixture(scope="module")
def experiment(tokenizer_dir, tmp_path_factory):
    """Train through ESPnet's interfaces; returns the config.yaml, the weights and the training figures."""
    root = tmp_path_factory.mktemp("learn_exp")
    tokenizer = load_tokenizer(tokenizer_dir)
    torch.manual_seed(0)
    # "SpeechGPT" without <eoa>, the last token add_unit_tokens adds: its rows become trainable.
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer) - 1, **BASE_LM)).save_pretrained(str(root / "lm"))
    config = dict(model="audio_lm", model_conf=dict(lm_name_or_path=str(root / "lm"), **LORA),
                  tokenizer_dir=str(tokenizer_dir))
    args = argparse.Namespace(**config)

    torch.manual_seed(0)
    model = CorrectorTask.build_model(args)
    preprocess = CorrectorTask.build_preprocess_fn(args, train=True)
    collate = CorrectorTask.build_collate_fn(args, train=True)
    utt_ids, batch = collate([(key, preprocess(key, dict(units=units, text_pt=pt, text_ct=ct)))
                              for key, (units, pt, ct) in EXAMPLES.items()])
    batch["utt_id"] = utt_ids  # as ESPnet's trainer does
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)

    model.train()
    start = time.perf_counter()
    for step in range(1, MAX_STEPS + 1):
        loss, stats, weight = model(**batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        figures = {name: float(value) for name, value in stats.items()}
        if figures["acc_asr"] == 1.0 and figures["acc_ger"] == 1.0 and figures["loss"] < CONVERGED_LOSS:
            break
    assert int(weight) == len(EXAMPLES)
    assert figures["loss"] < CONVERGED_LOSS and figures["acc"] == 1.0, (
        f"not converged after {step} steps: {figures}")

    (root / "exp").mkdir()
    (root / "exp/config.yaml").write_text(yaml.safe_dump(config))
    torch.save(model.state_dict(), root / "exp/valid.acc.best.pth")
    return dict(config=root / "exp/config.yaml", weights=root / "exp/valid.acc.best.pth", steps=step,
                train_s=time.perf_counter() - start, prefixes=training_prefixes(batch), **figures)


def training_prefixes(batch):
    """Per step, the training sequences up to the first token of the span that step generates."""
    spans = label_spans(batch["labels"])
    prefixes = {"I": [], "II": []}
    for ids, row_spans in zip(batch["input_ids"].tolist(), spans.tolist()):
        prefixes["I"].append(ids[: row_spans.index(PRELIMINARY_SPAN)])  # labels are the ids, unshifted
        prefixes["II"].append(ids[: row_spans.index(CORRECTED_SPAN)])
    return prefixes


def decode(experiment, monkeypatch=None, **options):
    """{key: Correction}; with monkeypatch, also (ids, mask) of every row of each lm.generate call."""
    torch.manual_seed(0)  # the base LM's <eoa> rows are drawn at load (resize_token_embeddings)
    generator = CorrectorGenerator.from_files(experiment["config"], experiment["weights"], **DECODE, **options)
    calls = []
    if monkeypatch is not None:
        generate = generator.lm.generate

        def spy(*, input_ids, attention_mask, **kwargs):
            calls.append(list(zip(input_ids.tolist(), attention_mask.tolist())))
            return generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

        monkeypatch.setattr(generator.lm, "generate", spy)
    corrections = dict(zip(EXAMPLES, generator.correct(unit_lists())))
    return (corrections, calls) if monkeypatch is not None else corrections


def test_lora_corrector_reproduces_both_transcripts_of_every_learned_utterance(experiment, monkeypatch):
    corrections, calls = decode(experiment, monkeypatch)

    preliminary_matches = sum(corrections[key].preliminary == pt for key, (_, pt, _) in EXAMPLES.items())
    corrected_matches = sum(corrections[key].corrected == ct for key, (_, _, ct) in EXAMPLES.items())
    fallbacks = sum(correction.status != PARSED for correction in corrections.values())
    figures = (f"{preliminary_matches}/{len(EXAMPLES)} preliminary and {corrected_matches}/{len(EXAMPLES)} "
               f"corrected exact, {fallbacks} fallbacks, after {experiment['steps']} steps "
               f"(loss {experiment['loss']:.4f}, acc {experiment['acc']:.3f}): {corrections}")
    assert (preliminary_matches, corrected_matches, fallbacks) == (len(EXAMPLES), len(EXAMPLES), 0), figures

    # One left-padded batch per step, holding exactly the training prefixes, of 4 different lengths.
    assert [len(rows) for rows in calls] == [len(EXAMPLES)] * 2, (
        f"rows per lm.generate call: {[len(rows) for rows in calls]}, expected one batch of "
        f"{len(EXAMPLES)} per step")
    for step, rows in zip(("I", "II"), calls):
        expected = experiment["prefixes"][step]
        assert len({len(prefix) for prefix in expected}) == len(EXAMPLES), (
            f"step {step}: prompts of equal length, nothing to pad: {[len(p) for p in expected]}")
        prompts, left_padded = [], 0
        for ids, mask in rows:
            n_padded = len(mask) - sum(mask)
            left_padded += mask == [0] * n_padded + [1] * (len(mask) - n_padded)
            prompts.append(ids[n_padded:])
        agreeing = sum(prompt in expected for prompt in prompts)
        assert (agreeing, left_padded) == (len(EXAMPLES), len(EXAMPLES)), (
            f"step {step}: {agreeing}/{len(EXAMPLES)} prompts are the training prefix, {left_padded}/"
            f"{len(EXAMPLES)} masks are left padding; generated from {rows}, trained on {expected}")


def test_zero_shot_decoding_differs_from_the_trained_adapter(experiment):
    trained = decode(experiment)
    zero_shot = decode(experiment, zero_shot=True)
    differing = [key for key in EXAMPLES if zero_shot[key] != trained[key]]
    reproduced = sum(zero_shot[key].preliminary == pt for key, (_, pt, _) in EXAMPLES.items()) + sum(
        zero_shot[key].corrected == ct for key, (_, _, ct) in EXAMPLES.items())
    figures = (f"zero-shot differs on {len(differing)}/{len(EXAMPLES)} utterances and reproduces "
               f"{reproduced}/{2 * len(EXAMPLES)} transcripts: {zero_shot}")
    assert (len(differing), reproduced) == (len(EXAMPLES), 0), figures
