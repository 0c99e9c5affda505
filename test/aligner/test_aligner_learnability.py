"""Aligner learnability: trained as ESPnet trains it, scored through the recipe's inference.

With an oracle re-synthesis (s* = s, the clean reference) and a preliminary estimate ŝ = s plus
an interfering voice and white noise, the best s̃ = iSTFT(α1 STFT(ŝ) + α2 STFT(s*)) is s itself
(α = [0, 1]). The untrained aligner returns ŝ (α = [1, 0], see aligner/model.py), so it gains
nothing over ŝ; a few dozen updates through `loss, stats, weight = model(**batch)` (the call
ESPnet's trainer makes) must lift the SI-SNR of s̃ on held-out triples well above ŝ's. Both
models are saved as the trainer saves them (a state dict beside a config.yaml) and scored
through AlignerInference.from_files / align, what stage 13 (bin/ali_inference) runs, so a
mismatch between training and inference (inputs swapped, s* shifted or mis-fitted, the weights
not loaded) fails the SI-SNR margin. With s* = s the best weights do not depend on the STFT's
geometry, so an inference STFT of another hop or size still scores well; the test therefore also
requires inference to return what the trained model's forward (the output the loss saw) returns
on the same held-out triples.

Measured (seeds fixed, one thread; hidden_channels 16, Adam lr 3e-3, 40 updates, ~3 s):
ŝ 5.4 dB held out, untrained s̃ 5.4 dB, trained s̃ 30.9 dB; inference = forward to 1e-7.
"""
import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sepalm_espnet.aligner.inference import AlignerInference
from sepalm_espnet.aligner.model import AlignerBuilder, fit_synthesized_length
from sepalm_espnet.metrics.separation import si_snr

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "egs2/mini_librimix/sepalm1/conf/tuning/train_ali_cnn_mini.yaml"
FS = 16000
HIDDEN_CHANNELS = 16  # the recipe's 85 costs ~20x the time; the architecture is otherwise the config's
LEARNING_RATE = 3e-3  # the config's 1e-4 is sized for thousands of steps, not 40
STEPS = 40
TRAIN_SAMPLES = (8000, 7200, 6400, 7600)  # 0.4-0.5 s, unequal: a padded batch, as the sequence iterator gives
HELD_OUT_SAMPLES = (9000, 8321, 7777)  # not whole STFT hops
# Measured: the trained aligner gains ~25 dB over ŝ on held-out triples; the untrained one 0 dB.
MIN_GAIN_DB = 15.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def triple(voiced, num_samples: int, seed: int) -> dict:
    """ŝ = s + an interfering voice 6 dB down + white noise 14 dB down; s* = s (oracle)."""
    rng = np.random.default_rng(10_000 + seed)
    reference = voiced(num_samples, seed)
    power = np.mean(reference**2)
    interference = voiced(num_samples, 5_000 + seed)
    interference *= np.sqrt(power / np.mean(interference**2)) * 0.5
    noise = rng.standard_normal(num_samples).astype(np.float32) * np.sqrt(power) * 0.2
    return dict(speech_est=reference + interference + noise, speech_syn=reference.copy(), speech_ref=reference)


def collate(items):
    """ESPnet's CommonCollateFn(float_pad_value=0.0) on float arrays: zero-padded (B, T) tensors
    and int64 `<name>_lengths` (importing espnet2.train.collate_fn costs ~15 s)."""
    batch = {}
    for name in items[0][1]:
        arrays = [data[name] for _, data in items]
        lengths = torch.tensor([len(a) for a in arrays], dtype=torch.long)
        padded = torch.zeros(len(arrays), int(lengths.max()))
        for row, array in zip(padded, arrays):
            row[: len(array)] = torch.from_numpy(array)
        batch[name], batch[f"{name}_lengths"] = padded, lengths
    return [uid for uid, _ in items], batch


def save_as_trained(model, config: dict, directory: Path):
    """config.yaml + model.pth, the layout AlignerInference.from_files reads (ESPnet's exp dir)."""
    directory.mkdir()
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(model.state_dict(), directory / "model.pth")
    return directory / "config.yaml", directory / "model.pth"


def held_out_si_snr(inference: AlignerInference, triples) -> tuple:
    """Mean SI-SNR (dB) of ŝ and of s̃ against s, as the scoring stage computes it; the s̃."""
    est, aligned, outputs = [], [], []
    for data in triples:
        output = inference.align(data["speech_est"], data["speech_syn"])
        assert output.shape == data["speech_ref"].shape
        est.append(si_snr(data["speech_ref"], data["speech_est"]))
        aligned.append(si_snr(data["speech_ref"], output))
        outputs.append(output)
    return float(np.mean(est)), float(np.mean(aligned)), outputs


def test_aligner_learns_to_take_the_oracle_resynthesis(tmp_path, voiced):
    recipe = yaml.safe_load(CONFIG.read_text())
    assert recipe["model"] == "stft_cnn" and recipe["optim"] == "adam"
    config = {"model": recipe["model"], "model_conf": {**recipe["model_conf"], "hidden_channels": HIDDEN_CHANNELS}}
    torch.manual_seed(0)
    # AlignerTask.build_model is AlignerBuilder.build_model (without the task's 19 s of imports).
    model = AlignerBuilder.build_model(argparse.Namespace(**config))
    untrained_files = save_as_trained(model, config, tmp_path / "untrained")

    # The task's preprocessing (fit s* to ŝ) and collation, then ESPnet's update: forward, backward, clip, step.
    items = [(f"tr{i}", fit_synthesized_length(f"tr{i}", triple(voiced, n, seed=i))) for i, n in enumerate(TRAIN_SAMPLES)]
    utt_id, batch = collate(items)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    model.train()
    losses = []
    for _ in range(STEPS):
        loss, stats, weight = model(**batch, utt_id=utt_id)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["grad_clip"])
        optimizer.step()
        losses.append(float(loss.detach()))
    assert int(weight) == len(TRAIN_SAMPLES) and np.isfinite(losses).all()
    trained_files = save_as_trained(model, config, tmp_path / "trained")

    held_out = [triple(voiced, n, seed=100 + i) for i, n in enumerate(HELD_OUT_SAMPLES)]
    est_db, untrained_db, _ = held_out_si_snr(AlignerInference.from_files(*untrained_files), held_out)
    est_db_again, trained_db, outputs = held_out_si_snr(AlignerInference.from_files(*trained_files), held_out)
    assert est_db == est_db_again
    # Inference returns what the loss was computed on: the trained model's own forward, on the
    # held-out triples padded into one batch as training batches are.
    _, held_out_batch = collate([(f"cv{i}", fit_synthesized_length(f"cv{i}", dict(data))) for i, data in enumerate(held_out)])
    model.eval()
    with torch.no_grad():
        forward = model.aligner(held_out_batch["speech_est"], held_out_batch["speech_syn"], held_out_batch["speech_est_lengths"])
    mismatch = max(float(np.abs(forward[i, : len(out)].numpy() - out).max()) for i, out in enumerate(outputs))
    figures = (
        f"held-out SI-SNR: ŝ {est_db:.2f} dB, untrained s̃ {untrained_db:.2f} dB, s̃ after {STEPS} steps "
        f"{trained_db:.2f} dB (gain {trained_db - est_db:.2f} dB, required >= {MIN_GAIN_DB}); "
        f"training loss {losses[0]:.2f} -> {losses[-1]:.2f}"
    )
    figures += f"; inference vs the trained forward: max |difference| {mismatch:.3g} (required < 1e-4)"
    assert 0 < est_db < 10, figures  # a real interference problem, neither solved nor hopeless
    failed = [
        name for name, ok in (
            ("untrained gain below the margin", untrained_db - est_db < MIN_GAIN_DB),  # learning is needed
            ("trained gain", trained_db - est_db >= MIN_GAIN_DB),
            # Samples peak at ~0.4: 1e-4 is float rounding, far below any change of STFT, inputs or weights.
            ("inference = training forward", mismatch < 1e-4),
        ) if not ok
    ]
    print(figures)
    assert not failed, f"failed: {failed}; {figures}"
