"""Learnability: each generative model of stage 10 (paper §3.4) memorises four utterances, and
its inference generates them back.

Every model is built by its ESPnet task (build_model, preprocess_fn, collate_fn) and trained
with forward() as ESPnet's trainer calls it (loss, stats, weight = model(**batch), AdamW, grad
clip 1) until it fits the four utterances. It is then decoded greedily from the training
conditions the way stage 11 decodes: the estimate tokens go through a token ark and
synthesize_scp (TokenReader -> Resynthesizer -> generate()), the text-to-semantic model
through units_of_text_file; the synthesizers are also decoded as one padded batch. A model
that fits its training data must reproduce it, so any disagreement between the training path
(teacher forcing, full-sequence masks) and the inference path (cached steps and their
positions, masks, iterative unmasking, guidance, the end token) shows up as wrong tokens or a
wrong length.

The utterances make decoding read every input (see utterances()); their lengths differ, so
training and the batched decoding see padding.

The last tests compare, on untrained models, the logits of every decoding step with the
teacher-forced logits forward() computes in training mode for the decoded sequence: any
difference between the two paths, even one a memorised model shrugs off, fails them.
"""
import argparse
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import soundfile as sf
import torch

from sepalm_espnet.synthesizer.codec import DacCodec, build_dac
from sepalm_espnet.synthesizer.g2p import TokenList
from sepalm_espnet.synthesizer.layers import SynthesisOptions
from sepalm_espnet.synthesizer.masked import CONDITION_DATA
from sepalm_espnet.synthesizer.resynthesize import Resynthesizer, synthesize_scp
from sepalm_espnet.synthesizer.t2s import units_of_text_file
from sepalm_espnet.synthesizer.t2s_model import T2SDecodeOptions
from sepalm_espnet.synthesizer.token_io import write_tokens
from sepalm_espnet.tasks.synthesizer import SynthesizerTask
from sepalm_espnet.tasks.t2s import TextToSemanticTask

Q, B = 4, 16  # codebooks x codes of the tiny codec
SEMANTIC_VOCAB, UNIT_VOCAB = 16, 20
PHONEME_SET = "a b c d e f g h i j".split()
FRAMES = {"utt0": 14, "utt1": 14, "utt2": 14, "utt3": 22}
# The mini recipe configs at d 64, dropout off (the models are decoded in eval mode anyway);
# condition dropout for classifier-free guidance as in every recipe config.
LAYERS = dict(d_model=64, nhead=4, num_layers=2, dim_feedforward=128, dropout=0.0, cond_drop_prob=0.1)
LEARNING_RATE = 3e-3
# SynthesisOptions' default guidance (the recipe's stage 11 without a decoding config) and a guided one.
GUIDANCE_SCALES = (1.0, 1.5)
MIN_ACCURACY = 0.95


def utterances(seed: int = 0) -> Dict[str, dict]:
    """Random tokens Ŝ (est) and S (ref), (T, Q) as ESPnet's kaldi_ark data; phonemes; semantic units.

    Each input decoding must read tells two utterances apart that agree on everything else the
    stage reads: utt0/utt1 share Ŝ and codebook 1 of S (the NAR stage and the masked model's
    codebooks 2..Q must read the condition), utt0/utt2 share codebook 1 of Ŝ, all the AR stage
    sees of it (the AR must read the phonemes), utt2/utt3 share the condition (Ŝ must be read).
    """
    rng = np.random.default_rng(seed)
    tokens = lambda frames: rng.integers(0, B, (frames, Q))
    phonemes = lambda count: " ".join(rng.choice(PHONEME_SET, count))
    semantic = lambda count: rng.integers(0, SEMANTIC_VOCAB, count)
    est, ref = tokens(FRAMES["utt0"]), tokens(FRAMES["utt0"])
    shared_phonemes, shared_semantic = phonemes(7), semantic(9)
    with_first_codebook = lambda first: np.concatenate([first[:, :1], tokens(len(first))[:, 1:]], axis=1)
    return {
        "utt0": dict(est_tokens=est, ref_tokens=ref, phonemes=phonemes(6), semantic=semantic(7)),
        "utt1": dict(est_tokens=est, ref_tokens=with_first_codebook(ref), phonemes=phonemes(8), semantic=semantic(10)),
        "utt2": dict(est_tokens=with_first_codebook(est), ref_tokens=tokens(FRAMES["utt2"]), phonemes=shared_phonemes,
                     semantic=shared_semantic),
        "utt3": dict(est_tokens=tokens(FRAMES["utt3"]), ref_tokens=tokens(FRAMES["utt3"]), phonemes=shared_phonemes,
                     semantic=shared_semantic),
    }


def task_args(model: str, model_conf: dict, token_list: TokenList) -> argparse.Namespace:
    """What ESPnet's parser gives build_model: --model, --model_conf, --token_list (a list once in config.yaml)."""
    return argparse.Namespace(model=model, model_conf=model_conf, token_list=list(token_list.tokens))


def espnet_batch(task, args: argparse.Namespace, examples: Dict[str, dict], names: List[str]) -> dict:
    """The task's preprocess_fn on each utterance, then its collate_fn, as ESPnet's data loader."""
    preprocess = task.build_preprocess_fn(args, train=True)
    collate = task.build_collate_fn(args, train=True)
    keys, batch = collate([(key, preprocess(key, {name: example[name] for name in names})) for key, example in examples.items()])
    batch["utt_id"] = keys  # ESPnet's trainer passes the keys too
    return batch


def train(model: torch.nn.Module, batch: dict, steps: int) -> Dict[str, float]:
    """ESPnet's training step with the recipe's optimizer (AdamW, grad clip 1); the last stats.

    The learning rate decays linearly to 0, so the random masks and condition drops of the
    last steps cannot kick the memorised model off its fit."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    model.train()
    for _ in range(steps):
        loss, stats, weight = model(**batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
    model.eval()
    return {name: round(float(value), 4) for name, value in stats.items()}


def trained_synthesizer(model: str, model_conf: dict, steps: int, condition: str = "phonemes"):
    """condition: the data name of the condition, the stream the recipe gives the model besides the tokens."""
    examples = utterances()
    token_list = TokenList.build(example["phonemes"] for example in examples.values())
    args = task_args(model, model_conf, token_list)
    torch.manual_seed(0)
    synthesizer = SynthesizerTask.build_model(args)
    batch = espnet_batch(SynthesizerTask, args, examples, ["est_tokens", "ref_tokens", condition])
    stats = train(synthesizer, batch, steps)
    return synthesizer, token_list, examples, batch, stats


def tiny_codec() -> DacCodec:
    torch.manual_seed(0)
    return DacCodec(build_dac(encoder_dim=4, encoder_rates=[2, 4, 5], latent_dim=16, decoder_dim=16,
                              n_codebooks=Q, codebook_size=B, codebook_dim=4))


def stage_11_tokens(tmp_path: Path, resynthesizer: Resynthesizer, examples: Dict[str, dict]) -> Dict[str, np.ndarray]:
    """synthesize_scp over a token ark of the estimates, as stage 11: (T'', Q) tokens per key.

    The waveforms are its output; the tokens are what Resynthesizer.generate_tokens_batch returned."""
    write_tokens(tmp_path / "est.ark", tmp_path / "est.scp", {k: e["est_tokens"].T for k, e in examples.items()}, B)
    codec = resynthesizer.codec
    for key, example in examples.items():
        sf.write(tmp_path / f"{key}.wav", np.zeros(len(example["est_tokens"]) * codec.hop_length), codec.sample_rate)
    (tmp_path / "wav.scp").write_text("".join(f"{key} {tmp_path / key}.wav\n" for key in examples))
    (tmp_path / "phonemes").write_text("".join(f"{k} {e['phonemes']}\n" for k, e in examples.items()))
    (tmp_path / "semantic").write_text("".join(f"{k} {' '.join(map(str, e['semantic']))}\n" for k, e in examples.items()))
    generated: List[np.ndarray] = []
    generate_tokens_batch = resynthesizer.generate_tokens_batch

    def recording(*args, **kwargs):
        tokens = generate_tokens_batch(*args, **kwargs)
        generated.extend(item.T.cpu().numpy() for item in tokens)
        return tokens

    resynthesizer.generate_tokens_batch = recording
    synthesize_scp(resynthesizer, tmp_path / "est.scp", tmp_path / "wav.scp", tmp_path / "out",
                   phonemes_path=tmp_path / "phonemes", semantic_path=tmp_path / "semantic")
    assert len(generated) == len(examples)
    return dict(zip(examples, generated))  # synthesize_scp goes through the scp in order


def batched_tokens(model, batch: dict, options: SynthesisOptions) -> Dict[str, np.ndarray]:
    """generate() on the padded training batch: (T'', Q) tokens per key."""
    names = ["est_tokens", "est_tokens_lengths", "phonemes", "phonemes_lengths", "semantic", "semantic_lengths"]
    tokens, lengths = model.generate(**{name: batch[name] for name in names if name in batch}, options=options)
    return {key: row[: int(length)].numpy() for key, row, length in zip(batch["utt_id"], tokens, lengths)}


def codebook_accuracy(generated: Dict[str, np.ndarray], examples: Dict[str, dict]) -> np.ndarray:
    """(Q,) token accuracy of each codebook over every target frame; missing frames count as wrong."""
    correct = np.zeros(Q)
    for key, example in examples.items():
        frames = min(len(generated[key]), len(example["ref_tokens"]))
        correct += (generated[key][:frames] == example["ref_tokens"][:frames]).sum(axis=0)
    return correct / sum(len(example["ref_tokens"]) for example in examples.values())


def check_reproduction(generated, examples, label: str) -> None:
    accuracy = codebook_accuracy(generated, examples)
    lengths = {key: len(tokens) for key, tokens in generated.items()}
    targets = {key: len(example["ref_tokens"]) for key, example in examples.items()}
    figures = f"{label}: codebook accuracies {np.round(accuracy, 3).tolist()}, lengths {lengths} (targets {targets})"
    assert lengths == targets, figures
    assert accuracy.min() >= MIN_ACCURACY, figures


AR_NAR_STEPS = 250


def test_ar_nar_generates_its_training_utterances_and_stops_at_their_length(tmp_path):
    model, token_list, examples, batch, stats = trained_synthesizer(
        "ar_nar", dict(num_codebooks=Q, codebook_size=B, **LAYERS), AR_NAR_STEPS
    )
    trained = f"after {AR_NAR_STEPS} steps ({stats})"
    codec = tiny_codec()
    for scale in GUIDANCE_SCALES:
        # Greedy, and a cap above the targets' lengths (the default caps at T'): a frame count
        # below the cap ceil(1.5 T') means the AR emitted its end token itself.
        options = SynthesisOptions(temperature=0.0, guidance_scale=scale, max_length_ratio=1.5)
        caps = {key: int(np.ceil(options.max_length_ratio * len(e["est_tokens"]))) for key, e in examples.items()}
        assert all(caps[key] > frames for key, frames in FRAMES.items())
        stage_11 = stage_11_tokens(tmp_path / f"guidance_{scale}", Resynthesizer(model, codec, token_list, options), examples)
        check_reproduction(stage_11, examples, f"stage 11, guidance {scale}, {trained}, caps {caps}")
        check_reproduction(batched_tokens(model, batch, options), examples, f"batched, guidance {scale}, {trained}")


MASKED_STEPS = 300


@pytest.mark.parametrize("condition", ["semantic", "phoneme"])
def test_masked_generates_its_training_utterances(tmp_path, condition):
    conf = dict(num_codebooks=Q, codebook_size=B, **LAYERS, condition=condition, semantic_vocab_size=SEMANTIC_VOCAB,
                phoneme_encoder_layers=1, inference_steps=[8, 4, 1])  # the mini config's rounds
    model, token_list, examples, batch, stats = trained_synthesizer(
        "masked", conf, MASKED_STEPS, CONDITION_DATA[condition]
    )
    trained = f"after {MASKED_STEPS} steps ({stats})"
    codec = tiny_codec()
    for scale in GUIDANCE_SCALES:
        options = SynthesisOptions(temperature=0.0, guidance_scale=scale)  # greedy; T'' = T' by construction
        stage_11 = stage_11_tokens(tmp_path / f"guidance_{scale}", Resynthesizer(model, codec, token_list, options), examples)
        check_reproduction(stage_11, examples, f"stage 11, guidance {scale}, {trained}")
        check_reproduction(batched_tokens(model, batch, options), examples, f"batched, guidance {scale}, {trained}")


T2S_STEPS = 100
T2S_CONF = dict(d_model=64, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=128, dropout=0.0)


def t2s_examples(seed: int = 0) -> Dict[str, dict]:
    """utt1's phonemes are utt0's plus one: only the last phoneme (and padding) tells them apart."""
    rng = np.random.default_rng(seed)
    phonemes = lambda count: " ".join(rng.choice(PHONEME_SET, count))
    units = lambda count: rng.integers(0, UNIT_VOCAB, count)
    first = phonemes(6)
    return {
        "utt0": dict(phonemes=first, units=units(9)),
        "utt1": dict(phonemes=f"{first} {phonemes(1)}", units=units(5)),
        "utt2": dict(phonemes=phonemes(5), units=units(12)),
        "utt3": dict(phonemes=phonemes(9), units=units(7)),
    }


def t2s_model(examples):
    token_list = TokenList.build(example["phonemes"] for example in examples.values())
    args = task_args("transformer", dict(T2S_CONF, unit_vocab_size=UNIT_VOCAB), token_list)
    torch.manual_seed(0)
    return TextToSemanticTask.build_model(args), token_list, espnet_batch(TextToSemanticTask, args, examples, ["phonemes", "units"])


def test_text_to_semantic_generates_its_training_units(tmp_path):
    examples = t2s_examples()
    model, token_list, batch = t2s_model(examples)
    stats = train(model, batch, T2S_STEPS)
    (tmp_path / "phonemes").write_text("".join(f"{key} {e['phonemes']}\n" for key, e in examples.items()))
    targets = {key: e["units"].tolist() for key, e in examples.items()}
    for batch_size in (16, 1):  # all four in one padded batch, and one by one
        units = units_of_text_file(model, token_list, tmp_path / "phonemes", tmp_path / "units",
                                   options=T2SDecodeOptions(batch_size=batch_size))
        lengths = {key: len(value) for key, value in units.items()}
        wrong = {key: units[key] for key in targets if units[key] != targets[key]}
        assert not wrong, (f"batch {batch_size}, after {T2S_STEPS} steps ({stats}): lengths {lengths} "
                           f"(targets {[len(t) for t in targets.values()]}), wrong {wrong}, targets {targets}")


class Recorder:
    """Keeps a copy of every output of a module (decoding masks logits in place after the head)."""

    def __init__(self, module: torch.nn.Module):
        self.outputs: List[torch.Tensor] = []
        self.handle = module.register_forward_hook(lambda _module, _inputs, output: self.outputs.append(output.clone()))

    def take(self) -> List[torch.Tensor]:
        outputs, self.outputs = self.outputs, []
        return outputs


def max_step_difference(step_logits: List[torch.Tensor], teacher_forced: torch.Tensor, lengths: torch.Tensor) -> float:
    """Largest |step t logits - forward()'s logits at t| over t <= each length (the end token's step included)."""
    differences = [
        float((step_logits[t][row] - teacher_forced[row, t]).abs().max())
        for row, length in enumerate(lengths.tolist())
        for t in range(min(length + 1, len(step_logits)))
    ]
    return max(differences)


@pytest.mark.parametrize("use_cache", [True, False])
def test_ar_decoding_steps_give_forward_s_teacher_forced_logits(use_cache):
    """Untrained: the logits of each AR step (after the cached prefix, or recomputed) equal the
    logits forward() computes in training mode (dropout 0, no condition dropped) for the decoded
    sequence, every utterance in one padded batch."""
    examples = utterances()
    token_list = TokenList.build(example["phonemes"] for example in examples.values())
    args = task_args("ar_nar", dict(num_codebooks=Q, codebook_size=B, **dict(LAYERS, cond_drop_prob=0.0)), token_list)
    torch.manual_seed(0)
    model = SynthesizerTask.build_model(args).eval()
    batch = espnet_batch(SynthesizerTask, args, examples, ["est_tokens", "ref_tokens", "phonemes"])
    recorder = Recorder(model.ar.head)
    inputs = {name: batch[name] for name in ("est_tokens", "est_tokens_lengths", "phonemes", "phonemes_lengths")}
    options = SynthesisOptions(temperature=1.0, seed=3, use_cache=use_cache)  # sampled: lengths vary
    tokens, lengths = model.generate(**inputs, options=options)
    steps = recorder.take()
    if not use_cache:  # each step recomputes every position: its last is the new one
        steps = [logits[:, -1] for logits in steps]
    with torch.no_grad():
        model.train()(**inputs, ref_tokens=tokens, ref_tokens_lengths=lengths, utt_id=batch["utt_id"])
    (teacher_forced,) = recorder.take()
    difference = max_step_difference(steps, teacher_forced, lengths)
    assert difference < 1e-4, f"max |step - teacher-forced| logit {difference:.2e}, lengths {lengths.tolist()}"


def test_t2s_decoding_steps_give_forward_s_teacher_forced_logits():
    """Untrained: each greedy step's logits equal forward()'s in training mode (dropout 0), one padded batch."""
    examples = t2s_examples()
    model, _, batch = t2s_model(examples)
    model.eval()
    recorder = Recorder(model.head)
    units, lengths = model.generate(batch["phonemes"], batch["phonemes_lengths"])
    steps = [logits[:, -1] for logits in recorder.take()]
    with torch.no_grad():
        model.train()(batch["phonemes"], batch["phonemes_lengths"], units, lengths, utt_id=batch["utt_id"])
    (teacher_forced,) = recorder.take()
    difference = max_step_difference(steps, teacher_forced, lengths)
    assert difference < 1e-4, f"max |step - teacher-forced| logit {difference:.2e}, lengths {lengths.tolist()}"
