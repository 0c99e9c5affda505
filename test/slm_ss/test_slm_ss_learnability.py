"""Learnability: SLM-SS memorises four two-speaker mixtures, and generate() separates them back.

A tiny model is trained with forward() as ESPnet's trainer calls it (loss, stats, weight =
model(**batch); Adam, grad clip 1) on four mixtures of two voiced sounds, with random target
tokens for both speakers (lengths differ between the speakers and the mixtures, so training
and decoding see padding). The targets share nothing between mixtures, so only the memory
tells the decoder what to write. Greedy decoding must then give, for every mixture, exactly
the serialized codebook 0 `spk_a <sc> spk_b <eos>` (status "ok", right lengths) in the order
the model learnt (PIT: the order of lower AR loss), and the NAR the residual codebooks with
>= 95 % token accuracy, in one padded batch and one mixture at a time. Any disagreement
between training (teacher forcing, full causal masks) and decoding (cached steps, segment
positions, the <sc>/<eos> constraints, NAR passes) shows up as wrong tokens or a wrong length.

Negative checks, with the same figures: an untrained model does not pass, and the trained
one given the mixtures in another order does not either (the memory is read).
"""
import time
from typing import Dict, List

import numpy as np
import pytest
import torch

from sepalm_espnet.slm_ss.model import SlmSsDecodeOptions, SlmSsModel
from sepalm_espnet.synthesizer.layers import PAD_ID

Q, V = 4, 32  # codebooks x codes
HOP = 320  # the encoder's frame shift = the codec's hop
SAMPLES = [4800, 4480, 4160, 4800]  # 0.26-0.3 s at 16 kHz: 15, 14, 13, 15 frames
LENGTHS = ([5, 9, 7, 6], [8, 6, 5, 9])  # frames of speaker 1 and speaker 2 per mixture
CONF = dict(encoder_conf=dict(output_dim=64, n_mels=40, num_layers=1), num_codebooks=Q, codebook_size=V, d_model=64,
            nhead=4, num_encoder_layers=1, num_decoder_layers=2, num_nar_layers=2, dim_feedforward=128, dropout=0.0)
STEPS, LEARNING_RATE = 250, 3e-3
MIN_NAR_ACCURACY = 0.95


def training_batch(voiced) -> dict:
    """ESPnet's collate of the four mixtures: zero-padded waveforms, PAD_ID-padded (B, T, Q) tokens."""
    rng = np.random.default_rng(0)
    speech = torch.zeros(len(SAMPLES), max(SAMPLES))
    for row, samples in enumerate(SAMPLES):
        speech[row, :samples] = torch.from_numpy(voiced(samples, 2 * row) + voiced(samples, 2 * row + 1))
    batch = dict(speech_mix=speech, speech_mix_lengths=torch.tensor(SAMPLES))
    for speaker, lengths in enumerate(LENGTHS, start=1):
        tokens = torch.full((len(lengths), max(lengths), Q), PAD_ID)
        for row, frames in enumerate(lengths):
            tokens[row, :frames] = torch.from_numpy(rng.integers(0, V, (frames, Q)))
        batch[f"ref_tokens{speaker}"], batch[f"ref_tokens{speaker}_lengths"] = tokens, torch.tensor(lengths)
    return batch


def references(batch: dict) -> List[List[torch.Tensor]]:
    """Per mixture, the (T, Q) tokens of speaker 1 and speaker 2."""
    return [[batch[f"ref_tokens{k}"][row, : LENGTHS[k - 1][row]] for k in (1, 2)] for row in range(len(SAMPLES))]


def train(model: SlmSsModel, batch: dict, steps: int) -> Dict[str, float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    model.train()
    for _ in range(steps):
        loss, stats, _ = model(**batch, utt_id=[f"mix{row}" for row in range(len(SAMPLES))])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
    model.eval()
    return {name: round(float(value), 4) for name, value in stats.items()}


@torch.no_grad()
def learnt_orders(model: SlmSsModel, batch: dict) -> List[int]:
    """Per mixture, 0 if the model learnt to write speaker 1 first, else 1 (PIT's choice)."""
    memory, valid = model.encode(batch["speech_mix"], batch["speech_mix_lengths"])
    losses, _, _ = model.ar_order_losses(memory, valid, batch["ref_tokens1"][..., 0], batch["ref_tokens1_lengths"],
                                         batch["ref_tokens2"][..., 0], batch["ref_tokens2_lengths"])
    return losses.argmin(dim=1).tolist()


def serialized(first: torch.Tensor, second: torch.Tensor) -> List:
    return [*first[:, 0].tolist(), "<sc>", *second[:, 0].tolist(), "<eos>"]


def figures(outputs, targets: List[List[torch.Tensor]], orders: List[int]) -> dict:
    """Exact serialized codebook-0 sequences, statuses and the NAR's residual-codebook accuracy
    (frames the AR did not give count as wrong)."""
    exact, statuses, correct, total = [], [], 0, 0
    for output, (spk1, spk2), order in zip(outputs, targets, orders):
        expected = (spk1, spk2) if order == 0 else (spk2, spk1)
        got = output.tokens
        exact.append(output.status == "ok" and serialized(*got) == serialized(*expected))
        statuses.append(output.status)
        for generated, reference in zip(got, expected):
            frames = min(len(generated), len(reference))
            correct += int((generated[:frames, 1:] == reference[:frames, 1:]).sum())
            total += reference[:, 1:].numel()
    return dict(exact=exact, statuses=statuses, nar_accuracy=round(correct / total, 4))


def reproduces(result: dict) -> bool:
    return all(result["exact"]) and result["nar_accuracy"] >= MIN_NAR_ACCURACY


def decode(model: SlmSsModel, batch: dict, one_by_one: bool = False):
    speech, lengths = batch["speech_mix"], batch["speech_mix_lengths"]
    frames = [-(-samples // HOP) for samples in SAMPLES]  # the codec's frame count: the cap's base
    options = SlmSsDecodeOptions(temperature=0.0)
    if not one_by_one:
        return model.generate(speech, lengths, frames, options)
    return [model.generate(speech[row : row + 1, : SAMPLES[row]], lengths[row : row + 1], frames[row : row + 1],
                           options)[0] for row in range(len(SAMPLES))]


def test_slm_ss_separates_its_training_mixtures(voiced, one_torch_thread):
    batch = training_batch(voiced)
    targets = references(batch)
    torch.manual_seed(0)
    untrained = SlmSsModel(**CONF).eval()
    untrained_figures = figures(decode(untrained, batch), targets, learnt_orders(untrained, batch))

    torch.manual_seed(0)
    model = SlmSsModel(**CONF)
    start = time.perf_counter()
    stats = train(model, batch, STEPS)
    training_seconds = time.perf_counter() - start
    orders = learnt_orders(model, batch)
    batched = figures(decode(model, batch), targets, orders)
    alone = figures(decode(model, batch, one_by_one=True), targets, orders)
    permuted = dict(batch, speech_mix=batch["speech_mix"][[1, 2, 3, 0]],
                    speech_mix_lengths=batch["speech_mix_lengths"][[1, 2, 3, 0]])
    wrong_mixtures = figures(decode(model, permuted), targets, orders)
    report = (f"{STEPS} steps in {training_seconds:.1f} s, last stats {stats}, learnt orders {orders} "
              f"(1: speaker 2 first); batched {batched}; one by one {alone}; untrained {untrained_figures}; "
              f"mixtures permuted {wrong_mixtures}")
    print(report)
    assert reproduces(batched) and reproduces(alone), report
    assert not reproduces(untrained_figures) and not any(untrained_figures["exact"]), report
    assert not any(wrong_mixtures["exact"]), report
