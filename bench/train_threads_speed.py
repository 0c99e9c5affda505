"""Training-step speed of the mini recipe's models at 1 and 2 threads (--train_num_threads), side by side.

A CPU training stage runs one job; with OMP_NUM_THREADS=1 (path.sh's default for the many
parallel jobs of decoding stages) it leaves the other cores idle. Each workload runs in a fresh
process per thread count (interleaved repeats, against drifting load): forward + backward +
Adam on batches shaped like the mini corpus's (8 items of 2.6 s, 130 codec frames, 40 phonemes).

- `aligner`: AlignerModel(STFTAligner) with train_ali_cnn_mini.yaml's model_conf (stage 12);
- `synthesizer`: ArNarSynthesizer with train_syn_ar_nar_mini.yaml's model_conf (stage 10).

Reported: best and median seconds per step and the speed-up of each thread count over 1.

    python bench/train_threads_speed.py --threads 1 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
TUNING = REPO / "egs2/TEMPLATE/sepalm1/conf/tuning"

WORKER = r"""
import json, sys, time
import torch, yaml
workload, steps, tuning = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
if workload == "aligner":
    from sepalm_espnet.aligner.model import AlignerModel, STFTAligner
    conf = yaml.safe_load(open(f"{tuning}/train_ali_cnn_mini.yaml"))["model_conf"]
    model = AlignerModel(STFTAligner(**conf))
    ref = 0.1 * torch.randn(8, 41600)
    lengths = torch.full((8,), 41600)
    batch = dict(speech_est=ref + 0.03 * torch.randn(8, 41600), speech_syn=ref + 0.05 * torch.randn(8, 41600),
                 speech_ref=ref, speech_est_lengths=lengths, speech_syn_lengths=lengths, speech_ref_lengths=lengths)
else:
    from sepalm_espnet.synthesizer.ar_nar import ArNarSynthesizer
    conf = yaml.safe_load(open(f"{tuning}/train_syn_ar_nar_mini.yaml"))["model_conf"]
    model = ArNarSynthesizer(70, **conf)
    q, size = conf["num_codebooks"], conf["codebook_size"]
    batch = dict(est_tokens=torch.randint(0, size, (8, 130, q)), est_tokens_lengths=torch.full((8,), 130),
                 ref_tokens=torch.randint(0, size, (8, 130, q)), ref_tokens_lengths=torch.full((8,), 130),
                 phonemes=torch.randint(0, 70, (8, 40)), phonemes_lengths=torch.full((8,), 40))
optimizer = torch.optim.Adam(model.parameters(), 1e-4)
def step():
    loss, _, _ = model(**batch)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
step()
walls = []
for _ in range(steps):
    start = time.perf_counter()
    step()
    walls.append(time.perf_counter() - start)
print(json.dumps(walls))
"""


def run(workload: str, steps: int, threads: int) -> List[float]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", WORKER, workload, str(steps), str(TUNING)],
                            env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=["aligner", "synthesizer"], choices=["aligner", "synthesizer"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per process")
    parser.add_argument("--repeats", type=int, default=2, help="processes per thread count (interleaved)")
    args = parser.parse_args(argv)

    print(f"{os.cpu_count()} CPUs; {args.repeats} processes x {args.steps} steps per thread count")
    print(f"{'workload':13}{'threads':>8}{'best s/step':>13}{'median':>9}{'speed-up':>10}")
    for workload in args.workloads:
        walls: Dict[int, List[float]] = {n: [] for n in args.threads}
        for _ in range(args.repeats):
            for n in args.threads:
                walls[n] += run(workload, args.steps, n)
        base = min(walls[args.threads[0]])
        for n in args.threads:
            print(f"{workload:13}{n:8d}{min(walls[n]):13.3f}{statistics.median(walls[n]):9.3f}"
                  f"{base / min(walls[n]):9.2f}x")


if __name__ == "__main__":
    main()
