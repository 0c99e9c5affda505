"""Text-to-semantic greedy decoding speed, KV-cached vs recomputing the prefix at every step,
side by side in one run: ms per generated unit at L and 4L units (random weights from
train_t2s_{mini,paper}.yaml's model_conf; the end token is disabled so every length is reached).
A cached step costs the same at any length, so its ratio (4L per-unit time / L per-unit time)
stays near 1; the uncached one grows with the length.

    python bench/t2s_speed.py                      # mini and paper, L = 100
    python bench/t2s_speed.py --sizes mini --length 200 --threads 2
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from sepalm_espnet.synthesizer.t2s_model import TextToSemantic

CONF_DIR = Path(__file__).resolve().parents[1] / "egs2/TEMPLATE/sepalm1/conf/tuning"
PHONEME_VOCAB = 80


def build(size: str) -> TextToSemantic:
    config = yaml.safe_load((CONF_DIR / f"train_t2s_{size}.yaml").read_text())
    torch.manual_seed(0)
    model = TextToSemantic(PHONEME_VOCAB, **config["model_conf"]).eval()
    with torch.no_grad():  # never end early: every run decodes exactly its length
        model.head.bias[model.end_id] = -1e4
    return model


def ms_per_unit(model: TextToSemantic, units: int, use_cache: bool) -> float:
    phonemes = torch.randint(0, PHONEME_VOCAB, (1, max(1, units // 4)))
    lengths = torch.tensor([phonemes.size(1)])
    started = time.perf_counter()
    generated, _ = model.generate(phonemes, lengths, max_length=units, use_cache=use_cache)
    assert generated.size(1) == units
    return 1000 * (time.perf_counter() - started) / units


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["mini", "paper"])
    parser.add_argument("--length", type=int, default=100, help="L: units of the short run (the long one: 4L)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'size':6} {'decoding':10} {'ms/unit @L':>11} {'ms/unit @4L':>12} {'4L/L':>6} {'speed-up @4L':>13}")
    for size in args.sizes:
        model = build(size)
        ms_per_unit(model, 8, True)  # warm-up
        rows = {cached: (ms_per_unit(model, args.length, cached), ms_per_unit(model, 4 * args.length, cached))
                for cached in (True, False)}
        for cached, (short, long) in rows.items():
            speedup = rows[False][1] / long if cached else 1.0
            print(f"{size:6} {'cached' if cached else 'recompute':10} {short:11.2f} {long:12.2f} "
                  f"{long / short:6.2f} {speedup:12.2f}x")


if __name__ == "__main__":
    main()
