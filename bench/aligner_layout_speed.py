"""Memory layout of the aligner's CNN (STFTAligner): contiguous against channels-last, for a
training step (forward + backward) and for inference (no autograd), side by side.

STFTAligner goes channels-last only without autograd; this is the measurement behind that
choice. Input: the CNN's features for `--items` utterances of `--seconds` (n_fft 512, hop
128: 257 bins), the model built from train_ali_cnn_mini.yaml's model_conf, the CNN layers
applied as predict_weights applies them (frame masks left out: they cost the same in both).

    python bench/aligner_layout_speed.py --threads 2
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from sepalm_espnet.aligner.model import STFTAligner

CONFIG = Path(__file__).resolve().parents[1] / "egs2/TEMPLATE/sepalm1/conf/tuning/train_ali_cnn_mini.yaml"


def cnn(aligner: STFTAligner, features: torch.Tensor) -> torch.Tensor:
    hidden = aligner.input_projection(features)
    for layer in aligner.residual_layers:
        hidden = hidden + aligner.activation(layer(hidden))
    return aligner.output_projection(hidden)


def best_seconds(aligner: STFTAligner, features: torch.Tensor, training: bool, repeats: int) -> float:
    walls = []
    for _ in range(repeats + 1):  # the first call warms oneDNN's primitive cache up
        start = time.perf_counter()
        with torch.set_grad_enabled(training):
            delta = cnn(aligner, features)
            if training:
                delta.square().mean().backward()
        walls.append(time.perf_counter() - start)
    return min(walls[1:])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--items", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    aligner = STFTAligner(**yaml.safe_load(CONFIG.read_text())["model_conf"])
    torch.nn.init.normal_(aligner.output_projection.weight, std=0.01)  # a zero projection would stop the gradient
    frames = 1 + round(args.seconds * 16000) // aligner.hop_length
    features = torch.randn(args.items, 4, aligner.n_fft // 2 + 1, frames)
    layouts = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}
    print(f"{args.threads} threads, {args.items} x {args.seconds} s ({tuple(features.shape)}), best of {args.repeats}")
    print(f"{'mode':11}{'contiguous s':>14}{'channels-last s':>17}{'cl / contiguous':>17}")
    for mode, training in (("training", True), ("inference", False)):
        seconds = [best_seconds(aligner, features.contiguous(memory_format=layout), training, args.repeats)
                   for layout in layouts.values()]
        print(f"{mode:11}{seconds[0]:14.3f}{seconds[1]:17.3f}{seconds[1] / seconds[0]:16.2f}x")


if __name__ == "__main__":
    main()
