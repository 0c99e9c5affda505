"""Aligner training speed (stage 12): one epoch (train steps + validation) with 1 s chunks, as
ESPnet's chunk iterator cut them before, against whole utterances padded in batches from the
config's sampler, side by side, on random signals of the mini corpus's shape.

Before (`iterator_type: chunk`, chunk_length 16000, batch_size 8): every utterance longer than
a chunk is cut into N = (L - W) // S + 1 chunks of W samples shifted by S = W / 2 (ESPnet's
ChunkIterFactory, espnet2/iterators/chunk_iter_factory.py), shuffled and batched by 8, the
last incomplete batch dropped; no lengths. After: batches from ESPnet's own sampler built from
the config (`--config`, default conf/tuning/train_ali_cnn_mini.yaml: `iterator_type:
sequence`) over shape files of the same lengths, padded, with `*_lengths`. Both: the config's
model (STFTAligner, model_conf), Adam at its lr, grad clip, forward + backward + step per
batch; then the validation set forward only (no_grad, eval), as ESPnet's trainer does.

Lengths: `--wav_scp` (a data dir's wav.scp; each mixture gives `--per_mixture` triples, as
the aligner trains on every separated estimate) or synthetic, uniform in [--min_s, --max_s]
(default 1.5-3.8 s: the mini corpus's mixtures measure 2.62 s mean, 1.50-4.42 s).
`--fraction` times a random subset of both sets (same subset for both ways).

    OMP_NUM_THREADS=1 python bench/ali_speed.py --fraction 0.25
    python bench/ali_speed.py --wav_scp egs2/mini_librimix/sepalm1/data/train/wav.scp \\
        --valid_wav_scp egs2/mini_librimix/sepalm1/data/dev/wav.scp
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sepalm_espnet.aligner.model import AlignerModel, STFTAligner  # noqa: E402

FS = 16000
CONFIG = REPO / "egs2/TEMPLATE/sepalm1/conf/tuning/train_ali_cnn_mini.yaml"
NAMES = ("speech_est", "speech_ref", "speech_syn")
Batch = Tuple[int, int, Optional[List[int]]]  # (batch size, padded length, lengths or None)


def lengths_from_scp(wav_scp: str, per_mixture: int) -> List[int]:
    lengths = [sf.info(line.split(maxsplit=1)[1].strip()).frames for line in open(wav_scp) if line.strip()]
    return [n for n in lengths for _ in range(per_mixture)]


def chunk_batches(lengths: Sequence[int], chunk_length: int, batch_size: int) -> List[Batch]:
    shift = chunk_length // 2
    total = sum((n - chunk_length) // shift + 1 for n in lengths if n > chunk_length)
    return [(batch_size, chunk_length, None)] * (total // batch_size)


def sampler_batches(lengths: Sequence[int], config: dict, workdir: Path) -> List[Batch]:
    from espnet2.samplers.build_batch_sampler import build_batch_sampler

    keys = [f"utt{i:05d}" for i in range(len(lengths))]
    shape_files = []
    for name in NAMES:
        path = workdir / f"{name}_shape"
        path.write_text("".join(f"{k} {n}\n" for k, n in zip(keys, lengths)))
        shape_files.append(str(path))
    sampler = build_batch_sampler(
        type=config.get("batch_type", "folded"), batch_size=config.get("batch_size", 20),
        batch_bins=config.get("batch_bins", 1000000), shape_files=shape_files,
        fold_lengths=config.get("fold_length", []),
    )
    by_key = dict(zip(keys, lengths))
    batches = []
    for batch in sampler:
        batch_lengths = sorted((by_key[k] for k in batch), reverse=True)
        batches.append((len(batch), batch_lengths[0], batch_lengths))
    return batches


def run_epoch(config: dict, train: List[Batch], valid: List[Batch], seed: int = 0) -> Tuple[float, float]:
    torch.manual_seed(seed)
    model = AlignerModel(STFTAligner(**config["model_conf"]))
    optimizer = torch.optim.Adam(model.parameters(), **config.get("optim_conf", {}))
    generator = torch.Generator().manual_seed(seed)

    def tensors(batch: Batch):
        size, length, lengths = batch
        reference = 0.1 * torch.randn(size, length, generator=generator)
        est = reference + 0.03 * torch.randn(size, length, generator=generator)
        syn = reference + 0.05 * torch.randn(size, length, generator=generator)
        if lengths is None:
            return est, syn, reference, None
        mask = torch.arange(length) < torch.tensor(lengths)[:, None]
        lengths = torch.tensor(lengths)
        return est * mask, syn * mask, reference * mask, lengths

    start = time.perf_counter()
    model.train()
    for batch in train:
        est, syn, ref, lengths = tensors(batch)
        loss, _, _ = model(est, syn, ref, lengths, lengths, lengths)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.get("grad_clip", 5.0))
        optimizer.step()
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    model.eval()
    with torch.no_grad():
        for batch in valid:
            est, syn, ref, lengths = tensors(batch)
            model(est, syn, ref, lengths, lengths, lengths)
    return train_seconds, time.perf_counter() - start


def describe(batches: List[Batch]) -> Tuple[int, int, float, float]:
    examples = sum(b[0] for b in batches)
    padded = sum(b[0] * b[1] for b in batches) / FS
    real = sum(sum(b[2]) if b[2] else b[0] * b[1] for b in batches) / FS
    return len(batches), examples, padded, real


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(CONFIG), help="the 'after' config (its model, optimizer, sampler)")
    parser.add_argument("--wav_scp", help="training lengths from this wav.scp")
    parser.add_argument("--valid_wav_scp", help="validation lengths from this wav.scp")
    parser.add_argument("--per_mixture", type=int, default=2, help="aligner triples per wav.scp line")
    parser.add_argument("--n_train", type=int, default=240)
    parser.add_argument("--n_valid", type=int, default=40)
    parser.add_argument("--min_s", type=float, default=1.5)
    parser.add_argument("--max_s", type=float, default=3.8)
    parser.add_argument("--fraction", type=float, default=1.0, help="time this random share of each set")
    parser.add_argument("--chunk_length", type=int, default=16000, help="'before': chunk length in samples")
    parser.add_argument("--chunk_batch_size", type=int, default=8, help="'before': chunks per batch")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["before", "after"], help="time one way only")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    config = yaml.safe_load(Path(args.config).read_text())
    rng = np.random.default_rng(args.seed)
    if args.wav_scp:
        train_lengths = lengths_from_scp(args.wav_scp, args.per_mixture)
        valid_lengths = lengths_from_scp(args.valid_wav_scp, args.per_mixture) if args.valid_wav_scp else []
    else:
        train_lengths = rng.integers(int(args.min_s * FS), int(args.max_s * FS) + 1, args.n_train).tolist()
        valid_lengths = rng.integers(int(args.min_s * FS), int(args.max_s * FS) + 1, args.n_valid).tolist()
    if args.fraction < 1.0:
        def pick(lengths: List[int]) -> List[int]:
            if not lengths:
                return lengths
            chosen = rng.choice(len(lengths), max(1, round(args.fraction * len(lengths))), replace=False)
            return [lengths[i] for i in sorted(chosen)]

        train_lengths, valid_lengths = pick(train_lengths), pick(valid_lengths)

    with tempfile.TemporaryDirectory() as workdir:
        after_train = sampler_batches(train_lengths, config, Path(workdir))
        after_valid = sampler_batches(valid_lengths, config, Path(workdir)) if valid_lengths else []
    plans = {
        "before": (chunk_batches(train_lengths, args.chunk_length, args.chunk_batch_size),
                   chunk_batches(valid_lengths, args.chunk_length, args.chunk_batch_size)),
        "after": (after_train, after_valid),
    }
    print(f"train {len(train_lengths)} utterances, {sum(train_lengths) / FS:.1f} s "
          f"({np.mean(train_lengths) / FS:.2f} s mean, {min(train_lengths) / FS:.2f}-{max(train_lengths) / FS:.2f}); "
          f"valid {len(valid_lengths)} utterances, {sum(valid_lengths) / FS:.1f} s; "
          f"{torch.get_num_threads()} torch thread(s)")
    print(f"before: iterator_type chunk, chunk_length {args.chunk_length}, batch_size {args.chunk_batch_size}")
    print(f"after:  {Path(args.config).name}: iterator_type {config.get('iterator_type')}, batch_type "
          f"{config.get('batch_type')}, batch_size {config.get('batch_size')}, batch_bins {config.get('batch_bins')}")

    results = {}
    for way in ("before", "after"):
        if args.only and way != args.only:
            continue
        train, valid = plans[way]
        train_seconds, valid_seconds = run_epoch(config, train, valid, args.seed)
        results[way] = (describe(train), describe(valid), train_seconds, valid_seconds)
        print(f"  {way} done: train {train_seconds:.1f} s, valid {valid_seconds:.1f} s, "
              f"peak RSS so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB", flush=True)

    print(f"\n{'':34}{'before (chunks)':>18}{'after (utterances)':>20}")
    rows = [
        ("train steps", lambda r: f"{r[0][0]}"),
        ("train examples", lambda r: f"{r[0][1]}"),
        ("train mean batch size", lambda r: f"{r[0][1] / max(1, r[0][0]):.1f}"),
        ("train audio computed (s, padded)", lambda r: f"{r[0][2]:.1f}"),
        ("train audio of the examples (s)", lambda r: f"{r[0][3]:.1f}"),
        ("valid steps", lambda r: f"{r[1][0]}"),
        ("valid audio computed (s, padded)", lambda r: f"{r[1][2]:.1f}"),
        ("train time (s)", lambda r: f"{r[2]:.1f}"),
        ("valid time (s)", lambda r: f"{r[3]:.1f}"),
        ("epoch time (s)", lambda r: f"{r[2] + r[3]:.1f}"),
        ("train s per computed audio s", lambda r: f"{r[2] / max(r[0][2], 1e-9):.3f}"),
    ]
    for label, cell in rows:
        print(f"{label:<34}" + "".join(f"{cell(results[w]) if w in results else '-':>{n}}"
                                       for w, n in (("before", 18), ("after", 20))))
    if len(results) == 2:
        before, after = (results[w][2] + results[w][3] for w in ("before", "after"))
        print(f"\nepoch speed-up: x{before / after:.2f} ({before:.1f} s -> {after:.1f} s)")


if __name__ == "__main__":
    main()
