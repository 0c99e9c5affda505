"""ASR teacher speed (stage 5): faster-whisper greedy on short TTS clips, one clip per
`WhisperModel.transcribe` call (the teacher before), `FasterWhisperTeacher` as it is now, and
faster-whisper's BatchedInferencePipeline in batches of `--batch_sizes`.

Clips: 20 sentences spoken by espeak-ng and resampled to 16 kHz by sox (cached in
`--clip_dir`), or `--wavs` read as they are. Each variant transcribes every clip once untimed
(warm-up), then `--repeats` rounds of one timed pass per variant (interleaved, against
drifting load); reported are the best and median wall and CPU (process) time and the
real-time factor (best wall seconds per second of audio). Every variant's transcripts are
compared with the one-at-a-time reference, clip by clip, raw (before text normalisation).

    OMP_NUM_THREADS=1 python bench/teacher_speed.py                     # 20 clips, 1 thread
    python bench/teacher_speed.py --threads 2 --batch_sizes 4 8 20 --repeats 5
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FS = 16000
SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "she sells sea shells by the sea shore every summer",
    "a journey of a thousand miles begins with a single step",
    "please call stella and ask her to bring these things",
    "the birch canoe slid on the smooth planks",
    "glue the sheet to the dark blue background",
    "it is easy to tell the depth of a well",
    "these days a chicken leg is a rare dish",
    "rice is often served in round bowls",
    "the juice of lemons makes fine punch",
    "the box was thrown beside the parked truck",
    "the hogs were fed chopped corn and garbage",
    "four hours of steady work faced us",
    "a large size in stockings is hard to sell",
    "the boy was there when the sun rose",
    "a rod is used to catch pink salmon",
    "the source of the huge river is the clear spring",
    "kick the ball straight and follow through",
    "help the woman get back to her feet",
    "a pot of tea helps to pass the evening",
]


def make_clips(sentences: Sequence[str], clip_dir: Path) -> List[Path]:
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (or pass --wavs)")
    clip_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, sentence in enumerate(sentences):
        path = clip_dir / f"clip{index:02d}.wav"
        if not path.is_file():
            with tempfile.NamedTemporaryFile(suffix=".wav") as raw:
                subprocess.run(["espeak-ng", "-w", raw.name, sentence], check=True)
                subprocess.run(["sox", "-q", raw.name, "-r", str(FS), "-c", "1", "-b", "16", str(path)],
                               check=True)
        paths.append(path)
    return paths


def one_at_a_time(model) -> Callable[[Sequence[np.ndarray]], List[str]]:
    """The teacher before batching: one `WhisperModel.transcribe` call per clip."""

    def transcribe(audios):
        texts = []
        for audio in audios:
            segments, _ = model.transcribe(
                audio, language="en", task="transcribe", beam_size=1, best_of=1, temperature=0.0,
                condition_on_previous_text=False, without_timestamps=True, vad_filter=False,
                no_speech_threshold=None,
            )
            texts.append("".join(segment.text for segment in segments).strip())
        return texts

    return transcribe


def batched(model, batch_size: int) -> Callable[[Sequence[np.ndarray]], List[str]]:
    """BatchedInferencePipeline over clips of at most 30 s: the clips are laid end to end (each
    from an even feature frame, so a segment's `seek` names its clip) and cut back out exactly
    with clip_timestamps; one encoder and one greedy generate call per `batch_size` clips."""
    from faster_whisper import BatchedInferencePipeline

    pipeline = BatchedInferencePipeline(model)
    alignment = 320  # samples: 2 feature frames

    def transcribe_batch(audios):
        offsets, position = [], 0
        for audio in audios:
            assert 0 < len(audio) <= model.feature_extractor.n_samples, "clips of at most 30 s"
            offsets.append(position)
            position += -(-len(audio) // alignment) * alignment
        joined = np.zeros(position, dtype=np.float32)
        for offset, audio in zip(offsets, audios):
            joined[offset:offset + len(audio)] = audio
        # The pipeline turns seconds into int(seconds * 16000): half a sample of margin keeps
        # the boundaries exact despite float rounding.
        clips = [{"start": (offset + 0.5) / FS, "end": (offset + len(audio) + 0.5) / FS}
                 for offset, audio in zip(offsets, audios)]
        segments, _ = pipeline.transcribe(
            joined, clip_timestamps=clips, batch_size=len(audios), language="en", task="transcribe",
            beam_size=1, best_of=1, temperature=0.0, condition_on_previous_text=False,
            without_timestamps=True, vad_filter=False, no_speech_threshold=None,
        )
        owner = {int(offset / FS * model.frames_per_second): i for i, offset in enumerate(offsets)}
        pieces = [[] for _ in audios]
        for segment in segments:
            pieces[owner[segment.seek]].append(segment.text)
        return ["".join(piece).strip() for piece in pieces]

    def transcribe(audios):
        return [text for start in range(0, len(audios), batch_size)
                for text in transcribe_batch(audios[start:start + batch_size])]

    return transcribe


def time_variants(variants, audios: Sequence[np.ndarray], repeats: int, audio_seconds: float) -> List[Dict]:
    """Warm-up pass each, then `repeats` rounds of one timed pass per variant, interleaved, so
    that load from other processes drifts over all variants alike."""
    texts = {name: transcribe(audios) for name, transcribe in variants}
    walls = {name: [] for name, _ in variants}
    cpus = {name: [] for name, _ in variants}
    for _ in range(repeats):
        for name, transcribe in variants:
            wall, cpu = time.perf_counter(), time.process_time()
            again = transcribe(audios)
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
            assert again == texts[name], f"{name}: transcripts changed between passes"
    return [
        dict(name=name, texts=texts[name], best=min(walls[name]), median=statistics.median(walls[name]),
             cpu=min(cpus[name]), cpu_median=statistics.median(cpus[name]), rtf=min(walls[name]) / audio_seconds)
        for name, _ in variants
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get(
        "SEPALM_WHISPER_BASE", str(REPO / "tools/models/whisper-base-ct2")))
    parser.add_argument("--wavs", nargs="*", help="16 kHz clips instead of the espeak-ng sentences")
    parser.add_argument("--clip_dir", default=str(Path(tempfile.gettempdir()) / "sepalm_teacher_clips"))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--compute_type", default="int8")
    parser.add_argument("--batch_sizes", type=int, nargs="*", default=[4, 8],
                        help="BatchedInferencePipeline batch sizes to time")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from faster_whisper import WhisperModel

    from sepalm_espnet.corrector.asr_teacher import FasterWhisperTeacher

    paths = [Path(p) for p in args.wavs] if args.wavs else make_clips(SENTENCES, Path(args.clip_dir))
    audios = []
    for path in paths:
        audio, fs = sf.read(path, dtype="float32")
        if fs != FS or audio.ndim != 1:
            sys.exit(f"{path}: need 16 kHz mono, got {fs} Hz, shape {audio.shape}")
        audios.append(audio)
    audio_seconds = sum(len(a) for a in audios) / FS
    print(f"{len(audios)} clips, {audio_seconds:.1f} s of audio ({audio_seconds / len(audios):.2f} s mean), "
          f"{args.threads} thread(s), {args.compute_type}", flush=True)

    model = WhisperModel(args.model, device="cpu", compute_type=args.compute_type, cpu_threads=args.threads)
    teacher = FasterWhisperTeacher(args.model, compute_type=args.compute_type, cpu_threads=args.threads)
    variants = [("one clip per transcribe() (before)", one_at_a_time(model)),
                ("FasterWhisperTeacher (now)", lambda audios: [t.text for t in teacher.transcribe(audios)])]
    for batch_size in args.batch_sizes:
        variants.append((f"BatchedInferencePipeline, batch {batch_size}", batched(model, batch_size)))

    results = time_variants(variants, audios, args.repeats, audio_seconds)
    print(f"{'':40} {'wall best':>10} {'median':>8} {'CPU best':>9} {'median':>8} {'RTF':>6}")
    for r in results:
        print(f"{r['name']:<40} {r['best']:9.2f}s {r['median']:7.2f}s {r['cpu']:8.2f}s {r['cpu_median']:7.2f}s "
              f"{r['rtf']:6.3f}")

    reference = results[0]
    print(f"\nspeed-up against '{reference['name']}' (best wall, best CPU):")
    for r in results[1:]:
        same = [a == b for a, b in zip(reference["texts"], r["texts"])]
        print(f"  {r['name']:<40} x{reference['best'] / r['best']:.2f} wall, x{reference['cpu'] / r['cpu']:.2f} CPU; "
              f"identical transcripts: {sum(same)}/{len(same)}")
        for index in (i for i, s in enumerate(same) if not s):
            print(f"    clip {index}: before {reference['texts'][index]!r}\n    {'':8}now    {r['texts'][index]!r}")
    print("\ntranscripts (before):")
    for path, text in zip(paths, reference["texts"]):
        print(f"  {path.name}: {text}")


if __name__ == "__main__":
    main()
