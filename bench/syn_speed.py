"""Synthesizer decoding speed: AR+NAR (KV-cached AR codebook 1, then one NAR pass per codebook)
vs masked (iterative parallel decoding, the config's rounds per codebook), same input length.

Random weights from the train_syn_{ar_nar,masked}_{mini,paper}.yaml model_conf, one utterance
of `--frames` DAC frames (250 = 5 s at 50 frames/s) at a time, generation only (no codec).
The AR stage runs to exactly T'' = T' frames (max_length_ratio 1, and the end token's bias
set to -1e4: random weights would otherwise stop at a random end token), so both methods
produce the same number of tokens.
A warm-up call on a short input runs first. tokens/s counts T'' x Q output tokens; RTF is
seconds of compute per second of audio.

    python bench/syn_speed.py                                   # mini (3 utts) + paper (1 utt)
    python bench/syn_speed.py --sizes mini --utterances 5 --threads 2
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import yaml

from sepalm_espnet.synthesizer.ar_nar import ArNarSynthesizer
from sepalm_espnet.synthesizer.masked import MaskedSynthesizer

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "egs2/TEMPLATE/sepalm1/conf/tuning"
MODELS = {"ar_nar": ArNarSynthesizer, "masked": MaskedSynthesizer}
FRAME_RATE = 50.0
PHONEME_VOCAB = 80
PHONEMES_PER_SECOND = 12  # read speech
SEMANTIC_PER_FRAME = 0.6  # deduplicated units per codec frame


def build(model: str, size: str, device: str) -> torch.nn.Module:
    config = yaml.safe_load((CONF_DIR / f"train_syn_{model}_{size}.yaml").read_text())
    torch.manual_seed(0)
    synthesizer = MODELS[model](**config["model_conf"], phoneme_vocab_size=PHONEME_VOCAB)
    if isinstance(synthesizer, ArNarSynthesizer):
        with torch.no_grad():  # random weights: never end early, so T'' = T'
            synthesizer.ar.head.bias[synthesizer.ar.end_id] = -1.0e4
    return synthesizer.to(device).eval()


def inputs(model: torch.nn.Module, frames: int, device: str, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    seconds = frames / FRAME_RATE
    num_phonemes = max(1, round(PHONEMES_PER_SECOND * seconds))
    batch = dict(
        est_tokens=torch.randint(0, model.codebook_size, (1, frames, model.num_codebooks), generator=generator),
        est_tokens_lengths=torch.tensor([frames]),
        phonemes=torch.randint(0, PHONEME_VOCAB, (1, num_phonemes), generator=generator),
        phonemes_lengths=torch.tensor([num_phonemes]),
    )
    if isinstance(model, MaskedSynthesizer) and model.condition == "semantic":
        semantic_vocab = model.backbone.null_id
        num_units = max(1, round(SEMANTIC_PER_FRAME * frames))
        batch = dict(
            est_tokens=batch["est_tokens"], est_tokens_lengths=batch["est_tokens_lengths"],
            semantic=torch.randint(0, semantic_vocab, (1, num_units), generator=generator),
            semantic_lengths=torch.tensor([num_units]),
        )
    return {name: value.to(device) for name, value in batch.items()}


def generate(model: torch.nn.Module, batch: dict) -> int:
    """Frames generated for the one utterance."""
    if isinstance(model, ArNarSynthesizer):
        _, lengths = model.generate(**batch, max_length_ratio=1.0)
    else:
        _, lengths = model.generate(**batch)
    return int(lengths[0])


def measure(model_name: str, size: str, frames: int, utterances: int, device: str) -> dict:
    model = build(model_name, size, device)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    generate(model, inputs(model, 10, device, seed=12345))  # warm-up
    total_seconds, total_frames = 0.0, 0
    for index in range(utterances):
        batch = inputs(model, frames, device, seed=index)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        total_frames += generate(model, batch)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        total_seconds += time.perf_counter() - started
    steps = "" if model_name == "ar_nar" else "/".join(map(str, model.inference_steps))
    return dict(
        model=model_name, size=size, params=params, steps=steps, utterances=utterances,
        seconds=total_seconds / utterances, frames=total_frames / utterances,
        tokens_per_s=total_frames * model.num_codebooks / total_seconds,
        rtf=total_seconds / (utterances * frames / FRAME_RATE),
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["mini", "paper"], choices=["mini", "paper"])
    parser.add_argument("--frames", type=int, default=250, help="T' per utterance (250 = 5 s)")
    parser.add_argument("--utterances", type=int, default=3, help="per mini model")
    parser.add_argument("--paper_utterances", type=int, default=1, help="per paper-size model")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {args.device}, {torch.get_num_threads()} threads, T' = {args.frames} frames "
          f"({args.frames / FRAME_RATE:.1f} s), torch {torch.__version__}")
    header = f"{'model':8} {'size':6} {'params M':>9} {'steps':>8} {'utts':>5} {'s/utt':>9} {'T_out':>6} {'tokens/s':>10} {'RTF':>8}"
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        utterances = args.utterances if size == "mini" else args.paper_utterances
        rows = {}
        for model_name in MODELS:
            row = measure(model_name, size, args.frames, utterances, args.device)
            rows[model_name] = row
            print(f"{row['model']:8} {row['size']:6} {row['params']:9.2f} {row['steps']:>8} {row['utterances']:5d} "
                  f"{row['seconds']:9.3f} {row['frames']:6.0f} {row['tokens_per_s']:10.1f} {row['rtf']:8.4f}", flush=True)
        ratio = rows["ar_nar"]["seconds"] / rows["masked"]["seconds"]
        print(f"{size}: masked is {ratio:.2f}x the speed of AR+NAR (AR+NAR s/utt / masked s/utt)"
              if math.isfinite(ratio) else f"{size}: ratio undefined", flush=True)


if __name__ == "__main__":
    main()
