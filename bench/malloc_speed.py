"""glibc malloc settings of path.sh (MALLOC_*_ variables) against glibc's defaults, side by side.

PyTorch and CTranslate2 allocate the same large buffers at every step. With glibc's defaults a
buffer above the (dynamic) mmap threshold is mapped fresh and unmapped when freed, so every step
pays page faults for zeroed pages: on this 2-core machine about 40% of the Whisper teacher's CPU
time was kernel time (perf: exc_page_fault, do_anonymous_page, munmap). Keeping freed memory in
the heap (a high mmap and trim threshold) lets the next step reuse it.

Workloads, each in a fresh process per setting and repeat (interleaved, against drifting load):

- `aligner`: forward + backward + Adam of the mini aligner (train_ali_cnn_mini.yaml's model) on
  batches of 8 one-second signals, the stage 12 workload;
- `teacher`: faster-whisper greedy transcription (as FasterWhisperTeacher) of 2.5 s noise-free
  tones-and-noise clips, the stage 5 workload (needs `--whisper_dir`, a CTranslate2 model dir,
  e.g. tools/models/whisper-base-ct2; skipped without it).

Reported per workload and setting: best and median wall seconds per step, CPU user and system
seconds per step (of the best repeat), and the speed-up of path.sh's setting.

    OMP_NUM_THREADS=1 python bench/malloc_speed.py --whisper_dir tools/models/whisper-base-ct2
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
PATH_SH = REPO / "egs2/TEMPLATE/sepalm1/path.sh"
MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

WORKER = r"""
import json, resource, sys, time
import numpy as np
workload, steps = sys.argv[1], int(sys.argv[2])
if workload == "aligner":
    import torch
    from sepalm_espnet.aligner.model import AlignerModel, STFTAligner
    torch.manual_seed(0)
    model = AlignerModel(STFTAligner())
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    ref = 0.1 * torch.randn(8, 16000)
    est, syn = ref + 0.03 * torch.randn(8, 16000), ref + 0.05 * torch.randn(8, 16000)
    def step():
        loss, _, _ = model(est, syn, ref)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
else:
    from sepalm_espnet.corrector.asr_teacher import FasterWhisperTeacher
    teacher = FasterWhisperTeacher(sys.argv[3])
    rng = np.random.default_rng(0)
    t = np.arange(40000) / 16000
    clip = (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t) + 0.01 * rng.standard_normal(40000)).astype("float32")
    def step():
        teacher.transcribe([clip])
step()
walls, cpus = [], []
for _ in range(steps):
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    step()
    after = resource.getrusage(resource.RUSAGE_SELF)
    walls.append(time.perf_counter() - start)
    cpus.append((after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime))
print(json.dumps({"wall": walls, "cpu": cpus}))
"""


def path_sh_settings() -> Dict[str, str]:
    """The MALLOC_* values path.sh exports (its `${VAR:-value}` defaults)."""
    settings = {}
    for line in PATH_SH.read_text().splitlines():
        for name in MALLOC_VARIABLES:
            prefix = f"export {name}=${{{name}:-"
            if line.startswith(prefix):
                settings[name] = line[len(prefix):].rstrip("}")
    missing = [name for name in MALLOC_VARIABLES if name not in settings]
    if missing:
        raise SystemExit(f"{PATH_SH}: no export of {', '.join(missing)}")
    return settings


def run(workload: str, steps: int, env: Dict[str, str], whisper_dir: str) -> Dict[str, List]:
    result = subprocess.run([sys.executable, "-c", WORKER, workload, str(steps), whisper_dir],
                            env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=["aligner", "teacher"], choices=["aligner", "teacher"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per process")
    parser.add_argument("--repeats", type=int, default=3, help="processes per setting (interleaved)")
    parser.add_argument("--whisper_dir", default="", help="CTranslate2 Whisper dir for the teacher workload")
    args = parser.parse_args(argv)

    tuned = path_sh_settings()
    base_env = {k: v for k, v in os.environ.items() if k not in MALLOC_VARIABLES}
    base_env["PYTHONPATH"] = str(REPO)
    base_env.setdefault("HF_HUB_OFFLINE", "1")
    settings = {"glibc defaults": base_env, "path.sh": {**base_env, **tuned}}
    print(f"path.sh: {' '.join(f'{k}={v}' for k, v in tuned.items())}; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', '(unset)')}; {args.repeats} processes x {args.steps} steps each")
    print(f"{'workload':10}{'setting':16}{'best wall/step':>16}{'median':>10}{'user/step':>11}{'sys/step':>10}")
    for workload in args.workloads:
        if workload == "teacher" and not args.whisper_dir:
            print(f"{workload:10}skipped: no --whisper_dir")
            continue
        runs: Dict[str, List[Dict[str, List]]] = {name: [] for name in settings}
        for _ in range(args.repeats):
            for name, env in settings.items():
                runs[name].append(run(workload, args.steps, env, args.whisper_dir))
        best = {}
        for name, results in runs.items():
            walls = [w for r in results for w in r["wall"]]
            best_run = min(results, key=lambda r: statistics.median(r["wall"]))
            user = statistics.mean(c[0] for c in best_run["cpu"])
            system = statistics.mean(c[1] for c in best_run["cpu"])
            best[name] = min(walls)
            print(f"{workload:10}{name:16}{min(walls):16.3f}{statistics.median(walls):10.3f}{user:11.3f}{system:10.3f}")
        print(f"{workload:10}{'speed-up':16}{best['glibc defaults'] / best['path.sh']:15.2f}x")


if __name__ == "__main__":
    main()
