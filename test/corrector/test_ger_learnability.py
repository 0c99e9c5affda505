"""Learnability of Table 3 (e): a LoRA-tuned text LM that learned 4 N-best lists corrects all of them.

End to end through the paths the recipe takes:
- the tokenizer: a SentencePiece BPE saved as a directory (`--tokenizer_dir`);
- the model: `GerTask.build_model` with the paper's LoRA options (r 8 on q, k, v, o) on a tiny
  local "pretrained" LLaMA (frozen, left out of the state dict);
- the batches: ESPnet's text strings (`nbest` lines as cascade_correct writes them, `text_ct`)
  through the task's preprocessor and collate (right-padded);
- training: `loss, stats, weight = model(**batch)` with `utt_id`, as ESPnet's trainer calls it;
- inference: config.yaml + the trainer's state dict reloaded by `GerCorrector.from_trained`
  (safe, strict), greedy line decoding of all 4 in ONE left-padded batch.
Every target must come back exactly with status `parsed`, from prompts that are, token for token,
the training sequences before their targets; the same LM with its adapter off (zero-shot, row
(f)) must answer differently. The targets differ from each 1-best, so copying it fails.

As in the corrector's learnability test, the base LM is initialised wide (std 0.3): with
transformers' 0.02 its frozen lm_head gives near-uniform logits that adapters cannot sharpen.
"""
import argparse
import time

import pytest
import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM

from sepalm_espnet.corrector.cascade import GER_PROMPT, GerCorrector, split_nbest
from sepalm_espnet.corrector.generate import PARSED
from sepalm_espnet.corrector.prompt import IGNORE_INDEX
from sepalm_espnet.corrector.text_norm import normalize_text
from sepalm_espnet.corrector.tokenizer import save_tokenizer, train_sentencepiece_tokenizer
from sepalm_espnet.tasks.ger import GerTask

EXAMPLES = {  # ESPnet text columns: nbest (normalised, as cascade_correct writes it), text_ct (the teacher's)
    "utt1": ("THE CAT SAT ON THE MAP ||| THE CAT SAT ON A MAT ||| A CAT SAT ON THE MAP", "THE CAT SAT ON THE MAT"),
    "utt2": ("A DOG RAN IN THE BARK ||| A DOG RAN IN A PARK ||| THE DOG RAN IN THE BARK", "A DOG RAN IN THE PARK"),
    "utt3": ("SHE SOLD SEA SHELLS ||| SHE SELLS SEE SHELLS ||| SHE SOLD SEE SHELLS", "SHE SELLS SEA SHELLS"),
    "utt4": ("BIRDS FLY SOUTH IN WINTER TIME ||| BIRD FLIES SOUTH IN WINTER ||| BIRDS FLY SOUTH IN WINTERS",
             "BIRDS FLY SOUTH IN WINTER"),
}
BASE_LM = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               intermediate_size=128, initializer_range=0.3)
LORA = dict(use_lora=True, lora_rank=8, lora_alpha=16, lora_dropout=0.05,
            lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])  # train_ger_paper.yaml
LEARNING_RATE = 1e-2
MAX_STEPS = 300
CONVERGED_LOSS = 0.05
DECODE = dict(batch_size=len(EXAMPLES), max_new_tokens=32)  # the longest target is 12 tokens


def nbest_lists():
    return [split_nbest(nbest) for nbest, _ in EXAMPLES.values()]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """Train through ESPnet's interfaces; returns config.yaml, the weights and the training figures."""
    root = tmp_path_factory.mktemp("ger_learn")
    texts = [text for nbest, target in EXAMPLES.values() for text in (*split_nbest(nbest), target)]
    save_tokenizer(train_sentencepiece_tokenizer(texts + [GER_PROMPT]), root / "tokenizer")
    config = dict(model="ger_lora", model_conf=dict(lm_name_or_path=str(root / "lm"), **LORA),
                  tokenizer_dir=str(root / "tokenizer"))
    args = argparse.Namespace(**config)
    preprocess = GerTask.build_preprocess_fn(args, train=True)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(preprocess.tokenizer), **BASE_LM)).save_pretrained(str(root / "lm"))

    torch.manual_seed(0)
    model = GerTask.build_model(args)
    collate = GerTask.build_collate_fn(args, train=True)
    utt_ids, batch = collate([(key, preprocess(key, dict(nbest=nbest, text_ct=target)))
                              for key, (nbest, target) in EXAMPLES.items()])
    batch["utt_id"] = utt_ids  # as ESPnet's trainer does
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE,
                                  weight_decay=0.0)
    model.train()
    start = time.perf_counter()
    for step in range(1, MAX_STEPS + 1):
        loss, stats, weight = model(**batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        figures = {name: float(value) for name, value in stats.items()}
        if figures["line_acc"] == 1.0 and figures["loss"] < CONVERGED_LOSS:
            break
    assert int(weight) == len(EXAMPLES)
    assert figures["loss"] < CONVERGED_LOSS and figures["acc"] == 1.0, f"not converged after {step} steps: {figures}"

    (root / "exp").mkdir()
    (root / "exp/config.yaml").write_text(yaml.safe_dump(config))
    state_dict = model.state_dict()
    torch.save(state_dict, root / "exp/valid.loss.best.pth")
    prefixes = [ids[: labels.index(next(x for x in labels if x != IGNORE_INDEX))]
                for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist())]
    return dict(config=root / "exp/config.yaml", weights=root / "exp/valid.loss.best.pth", steps=step,
                train_s=time.perf_counter() - start, prefixes=prefixes, saved=len(state_dict),
                lora_saved=sum("lora_" in name for name in state_dict), **figures)


def decode(experiment, monkeypatch=None, **options):
    """{key: Correction}; with monkeypatch, also the (ids, mask) rows of every lm.generate call."""
    corrector = GerCorrector.from_trained(experiment["config"], experiment["weights"], **DECODE, **options)
    calls = []
    if monkeypatch is not None:
        generate = corrector.lm.generate

        def spy(*, input_ids, attention_mask, **kwargs):
            calls.append(list(zip(input_ids.tolist(), attention_mask.tolist())))
            return generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

        monkeypatch.setattr(corrector.lm, "generate", spy)
    corrections = dict(zip(EXAMPLES, corrector.correct(nbest_lists(), list(EXAMPLES))))
    return (corrections, calls) if monkeypatch is not None else corrections


def test_targets_are_not_the_one_best_and_are_normalised():
    for nbest, target in EXAMPLES.values():
        assert normalize_text(target) == target and split_nbest(nbest)[0] != target


def test_checkpoint_holds_only_the_adapters(experiment):
    # 2 layers x (q, k, v, o) x (A, B); the frozen LM reloads from lm_name_or_path.
    assert (experiment["saved"], experiment["lora_saved"]) == (16, 16), experiment


def test_lora_lm_reproduces_every_learned_target(experiment, monkeypatch):
    corrections, calls = decode(experiment, monkeypatch)
    matches = sum(corrections[key].corrected == target for key, (_, target) in EXAMPLES.items())
    fallbacks = sum(correction.status != PARSED for correction in corrections.values())
    one_best = sum(corrections[key].preliminary == split_nbest(nbest)[0] for key, (nbest, _) in EXAMPLES.items())
    figures = (f"{matches}/{len(EXAMPLES)} targets exact, {fallbacks} fallbacks, after {experiment['steps']} "
               f"steps, {experiment['train_s']:.1f} s (loss {experiment['loss']:.4f}, acc {experiment['acc']:.3f}): "
               f"{corrections}")
    assert (matches, fallbacks, one_best) == (len(EXAMPLES), 0, len(EXAMPLES)), figures

    # One left-padded batch holding exactly the training prompts, of different lengths.
    [rows] = calls
    expected = experiment["prefixes"]
    assert len({len(prefix) for prefix in expected}) > 1, "prompts of equal length: nothing to pad"
    prompts, left_padded = [], 0
    for ids, mask in rows:
        n_padded = len(mask) - sum(mask)
        left_padded += mask == [0] * n_padded + [1] * (len(mask) - n_padded)
        prompts.append(ids[n_padded:])
    agreeing = sum(prompt in expected for prompt in prompts)
    assert (len(rows), agreeing, left_padded) == (len(EXAMPLES),) * 3, (rows, expected)


def test_zero_shot_lm_answers_differently(experiment):
    trained = decode(experiment)
    zero_shot = decode(experiment, zero_shot=True)
    differing = sum(zero_shot[key] != trained[key] for key in EXAMPLES)
    reproduced = sum(zero_shot[key].corrected == target for key, (_, target) in EXAMPLES.items())
    assert (differing, reproduced) == (len(EXAMPLES), 0), (
        f"zero-shot differs on {differing}/{len(EXAMPLES)} and reproduces {reproduced} targets: {zero_shot}")
