"""Reference-based separation metrics (paper §4.3): SI-SNR, SDR, PESQ, ESTOI, improvements.

Estimates are matched to references once, by permutation-invariant SI-SNR, and every metric
uses that match; the `permutation` file records it so that later stages (ASR, speaker
similarity) score the same speaker order.

Files of a score directory (sorted by key, written atomically):

- `metrics.tsv`: the tab-separated header `key perm si_snr si_snri sdr sdri pesq pesqi estoi
  estoii`, then one line per utterance. `perm` is the 1-based permutation joined by commas
  (`2,1`); metrics are means over the utterance's speakers with 4 decimals; `nan` marks an
  utterance whose PESQ could not be computed.
- `permutation`: Kaldi style `key 2 1`: the i-th number is the 1-based index n of the estimate
  (`spk<n>.scp` of the estimate directory) matched to the reference `spk<i>.scp`.
- `summary.json`: `n_utterances`, `n_pesq_failures`, then the mean of each metric (`null` when
  no utterance has a value).
"""
from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import fast_bss_eval
import numpy as np
from pesq import PesqError, pesq
from pystoi import stoi
from scipy.signal import resample_poly

from sepalm_espnet.data.audio import AudioError, read_audio
from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, atomic_path, read_kv, write_kv

logger = logging.getLogger(__name__)

METRIC_NAMES = ("si_snr", "si_snri", "sdr", "sdri", "pesq", "pesqi", "estoi", "estoii")
METRICS_FILE = "metrics.tsv"
PERMUTATION_FILE = "permutation"
SUMMARY_FILE = "summary.json"

EPS = 1e-8
# Separators that pad to a whole STFT hop differ by a few samples; more is worth a warning.
LENGTH_TOLERANCE_S = 0.005
# An estimate identical to its reference has infinite SDR; clamping keeps oracle runs averageable.
SDR_CLAMP_DB = 100.0
PESQ_WIDEBAND_FS = 16000


@dataclass(frozen=True)
class UtteranceScores:
    key: str
    permutation: Tuple[int, ...]  # 0-based estimate index matched to each reference speaker
    metrics: Mapping[str, float]  # METRIC_NAMES -> mean over speakers


def si_snr(reference: np.ndarray, estimate: np.ndarray, eps: float = EPS) -> float:
    """Scale-invariant SNR in dB: a separator's output gain is arbitrary, so it must not count."""
    reference = np.asarray(reference, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    reference = reference - reference.mean()
    estimate = estimate - estimate.mean()
    target = np.dot(estimate, reference) / (np.dot(reference, reference) + eps) * reference
    noise = estimate - target
    # eps outside the ratio too: a silent estimate scores 10*log10(eps) dB, not 0 dB.
    return float(10 * np.log10(np.dot(target, target) / (np.dot(noise, noise) + eps) + eps))


def best_permutation(
    references: Sequence[np.ndarray], estimates: Sequence[np.ndarray]
) -> Tuple[int, ...]:
    """0-based estimate index for each reference, maximising the summed SI-SNR (PIT)."""
    if len(references) != len(estimates):
        raise ValueError(f"{len(estimates)} estimates for {len(references)} references")
    pairwise = np.array([[si_snr(ref, est) for est in estimates] for ref in references])
    speakers = range(len(references))
    return max(itertools.permutations(speakers), key=lambda perm: pairwise[speakers, perm].sum())


def _pairwise_sdr(references: np.ndarray, estimates: np.ndarray) -> np.ndarray:
    """BSS-eval v4 SDR of every (reference, estimate) pair, shape (n_ref, n_est).

    An estimate's SDR depends only on its own reference, so these are the values
    bss_eval_sources reports; its non-pairwise path fails under NumPy 2 (fast_bss_eval 0.1.3).
    """
    return -fast_bss_eval.sdr_loss(estimates, references, pairwise=True, clamp_db=SDR_CLAMP_DB)


def pesq_or_nan(reference: np.ndarray, degraded: np.ndarray, fs: int, what: str) -> float:
    """PESQ rejects silent or too short signals; one such utterance must not stop a test set."""
    if fs == 8000:
        mode = "nb"
    else:
        mode = "wb"
        if fs != PESQ_WIDEBAND_FS:
            gcd = math.gcd(fs, PESQ_WIDEBAND_FS)
            reference = resample_poly(reference, PESQ_WIDEBAND_FS // gcd, fs // gcd)
            degraded = resample_poly(degraded, PESQ_WIDEBAND_FS // gcd, fs // gcd)
            fs = PESQ_WIDEBAND_FS
    try:
        return float(pesq(fs, reference, degraded, mode))
    except (PesqError, ValueError) as exc:  # a silent degraded signal surfaces as ValueError
        logger.warning("PESQ of %s failed (%s); recording NaN", what, exc)
        return math.nan


def _trim_to_common_length(
    key: str, signals: Sequence[np.ndarray], fs: int
) -> Tuple[np.ndarray, ...]:
    lengths = [len(signal) for signal in signals]
    shortest = min(lengths)
    if max(lengths) - shortest > LENGTH_TOLERANCE_S * fs:
        logger.warning(
            "utterance '%s': lengths differ (%s samples: mixture, references, estimates); "
            "trimming to %d",
            key, lengths, shortest,
        )
    return tuple(np.asarray(signal[:shortest], dtype=np.float64) for signal in signals)


def score_utterance(
    key: str,
    mixture: np.ndarray,
    references: Sequence[np.ndarray],
    estimates: Sequence[np.ndarray],
    fs: int,
    permutation: Optional[Sequence[int]] = None,
) -> UtteranceScores:
    """Score one utterance; improvements are relative to the unprocessed mixture.

    `permutation` (estimate index per reference) scores a system whose outputs keep the
    separator's speaker order under the separator's stored match, instead of a new PIT.
    """
    n_spk = len(references)
    trimmed = _trim_to_common_length(key, [mixture, *references, *estimates], fs)
    mixture = trimmed[0]
    references = np.stack(trimmed[1 : 1 + n_spk])
    estimates = np.stack(trimmed[1 + n_spk :])
    if permutation is None:
        perm = best_permutation(references, estimates)
    elif sorted(permutation) != list(range(n_spk)):
        raise DataDirError(f"utterance '{key}': {list(permutation)} is not a permutation of {n_spk} speakers")
    else:
        perm = tuple(permutation)
    speakers = range(n_spk)
    matched = estimates[list(perm)]

    # The mixture rides along as one more estimate: one Toeplitz solve per reference serves all.
    sdr = _pairwise_sdr(references, np.concatenate([estimates, mixture[None]]))
    sdr_est, sdr_mix = sdr[speakers, perm], sdr[:, -1]
    si_snr_est = np.array([si_snr(references[i], matched[i]) for i in speakers])
    si_snr_mix = np.array([si_snr(references[i], mixture) for i in speakers])
    estoi_est = np.array([stoi(references[i], matched[i], fs, extended=True) for i in speakers])
    estoi_mix = np.array([stoi(references[i], mixture, fs, extended=True) for i in speakers])
    pesq_est = np.array(
        [pesq_or_nan(references[i], matched[i], fs, f"utterance '{key}' spk{i + 1} estimate")
         for i in speakers]
    )
    pesq_mix = np.array(
        [pesq_or_nan(references[i], mixture, fs, f"utterance '{key}' spk{i + 1} mixture")
         for i in speakers]
    )
    # One failed PESQ leaves both PESQ and PESQi undefined, so both means cover the same utterances.
    pesq_failed = bool(np.isnan(pesq_est).any() or np.isnan(pesq_mix).any())
    metrics = {
        "si_snr": si_snr_est.mean(),
        "si_snri": (si_snr_est - si_snr_mix).mean(),
        "sdr": sdr_est.mean(),
        "sdri": (sdr_est - sdr_mix).mean(),
        "pesq": math.nan if pesq_failed else pesq_est.mean(),
        "pesqi": math.nan if pesq_failed else (pesq_est - pesq_mix).mean(),
        "estoi": estoi_est.mean(),
        "estoii": (estoi_est - estoi_mix).mean(),
    }
    return UtteranceScores(
        key, tuple(int(i) for i in perm), {name: float(value) for name, value in metrics.items()}
    )


def speaker_count(ref_dir: PathLike) -> int:
    """Speakers are spk1.scp, spk2.scp, ... without gaps."""
    n_spk = 0
    while (Path(ref_dir) / f"spk{n_spk + 1}.scp").is_file():
        n_spk += 1
    if n_spk == 0:
        raise DataDirError(f"{Path(ref_dir) / 'spk1.scp'}: file not found")
    return n_spk


def _check_keys(keys: Sequence[str], scp: Mapping[str, str], path: Path, exact: bool) -> None:
    for key in keys:
        if key not in scp:
            raise DataDirError(f"{path}: missing key '{key}'")
    if exact:
        wanted = set(keys)
        for key in scp:
            if key not in wanted:
                raise DataDirError(f"{path}: key '{key}' is not in the reference wav.scp")


def read_mono(path: str) -> Tuple[np.ndarray, int]:
    """(float64 samples, fs) of a mono file; more channels are an error naming the file."""
    signal, fs = read_audio(path, dtype="float64")
    if signal.ndim != 1:
        raise AudioError(f"{path}: expected mono audio, got {signal.shape[1]} channels")
    return signal, fs


def iter_utterances(
    ref_dir: PathLike, est_dir: PathLike, keys: Optional[Sequence[str]] = None
) -> Iterator[Tuple[str, np.ndarray, List[np.ndarray], List[np.ndarray], int]]:
    """(key, mixture, references, estimates, fs) of each utterance, after checking the dirs.

    Without `keys` every reference utterance is read and the key sets must match exactly;
    with `keys` (one JOB's split) only those are read.
    """
    ref_dir, est_dir = Path(ref_dir), Path(est_dir)
    n_spk = speaker_count(ref_dir)
    extra_estimate = est_dir / f"spk{n_spk + 1}.scp"
    if extra_estimate.is_file():
        raise DataDirError(f"{extra_estimate}: the reference {ref_dir} has only {n_spk} speakers")
    wav_scp = read_kv(ref_dir / "wav.scp")
    exact = keys is None
    if exact:
        keys = list(wav_scp)
    else:
        _check_keys(keys, wav_scp, ref_dir / "wav.scp", exact=False)
    paths = [ref_dir / f"spk{i}.scp" for i in range(1, n_spk + 1)]
    paths += [est_dir / f"spk{i}.scp" for i in range(1, n_spk + 1)]
    scps = [read_kv(path) for path in paths]
    for scp, path in zip(scps, paths):
        _check_keys(keys, scp, path, exact)

    for key in keys:
        mixture, fs = read_mono(wav_scp[key])
        sources = []
        for scp in scps:
            signal, signal_fs = read_mono(scp[key])
            if signal_fs != fs:
                raise AudioError(
                    f"{scp[key]}: sample rate {signal_fs} differs from the mixture "
                    f"{wav_scp[key]} ({fs})"
                )
            sources.append(signal)
        yield key, mixture, sources[:n_spk], sources[n_spk:], fs


def score_dirs(
    ref_dir: PathLike,
    est_dir: PathLike,
    keys: Optional[Sequence[str]] = None,
    permutations: Optional[Mapping[str, Sequence[int]]] = None,
) -> List[UtteranceScores]:
    """Score the estimate directory's spk<n>.scp against the reference directory (PIT unless
    `permutations`, as read_permutation returns them, fix the match)."""
    scores = []
    for utterance in iter_utterances(ref_dir, est_dir, keys):
        key = utterance[0]
        if permutations is not None and key not in permutations:
            raise DataDirError(f"utterance '{key}' has no stored permutation")
        scores.append(score_utterance(*utterance, permutation=None if permutations is None else permutations[key]))
    return scores


def permutations_of_dirs(
    ref_dir: PathLike, est_dir: PathLike, keys: Optional[Sequence[str]] = None
) -> Dict[str, Tuple[int, ...]]:
    """PIT match only (SI-SNR), for sets that later stages train on but nobody scores."""
    permutations = {}
    for key, mixture, references, estimates, fs in iter_utterances(ref_dir, est_dir, keys):
        trimmed = _trim_to_common_length(key, [mixture, *references, *estimates], fs)
        n_spk = len(references)
        permutations[key] = best_permutation(trimmed[1 : 1 + n_spk], trimmed[1 + n_spk :])
    return permutations


def write_permutation(path: PathLike, permutations: Mapping[str, Sequence[int]]) -> None:
    write_kv(path, {key: _permutation_text(perm, " ") for key, perm in permutations.items()})


def summarize(scores: Sequence[UtteranceScores]) -> Dict[str, Optional[float]]:
    """Means over utterances; an utterance whose PESQ failed is left out of the PESQ means only."""
    summary: Dict[str, Optional[float]] = {
        "n_utterances": len(scores),
        "n_pesq_failures": sum(math.isnan(s.metrics["pesqi"]) for s in scores),
    }
    for name in METRIC_NAMES:
        values = [s.metrics[name] for s in scores if not math.isnan(s.metrics[name])]
        summary[name] = float(np.mean(values)) if values else None
    return summary


def _permutation_text(permutation: Sequence[int], separator: str) -> str:
    return separator.join(str(i + 1) for i in permutation)


def write_scores(out_dir: PathLike, scores: Iterable[UtteranceScores]) -> None:
    """Write metrics.tsv, permutation and summary.json (formats: module docstring)."""
    out_dir = Path(out_dir)
    scores = sorted(scores, key=lambda s: s.key)
    with atomic_path(out_dir / METRICS_FILE) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\t".join(("key", "perm", *METRIC_NAMES)) + "\n")
            for s in scores:
                values = [f"{s.metrics[name]:.4f}" for name in METRIC_NAMES]
                f.write("\t".join([s.key, _permutation_text(s.permutation, ","), *values]) + "\n")
    write_permutation(out_dir / PERMUTATION_FILE, {s.key: s.permutation for s in scores})
    # Summarise the rounded values as written, so a merged summary equals an unsplit one exactly.
    summary = summarize(read_scores(out_dir))
    with atomic_path(out_dir / SUMMARY_FILE) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def read_scores(score_dir: PathLike) -> List[UtteranceScores]:
    path = Path(score_dir) / METRICS_FILE
    if not path.is_file():
        raise DataDirError(f"{path}: file not found")
    header = ["key", "perm", *METRIC_NAMES]
    scores = []
    with open(path, encoding="utf-8") as f:
        found = f.readline().rstrip("\n").split("\t")
        if found != header:
            raise DataDirError(f"{path}:1: header {found} is not {header}")
        for lineno, line in enumerate(f, 2):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != len(header):
                raise DataDirError(
                    f"{path}:{lineno}: {len(fields)} columns, expected {len(header)}"
                )
            try:
                perm = tuple(int(i) - 1 for i in fields[1].split(","))
                metrics = {name: float(value) for name, value in zip(METRIC_NAMES, fields[2:])}
            except ValueError as exc:
                raise DataDirError(f"{path}:{lineno}: {exc}") from exc
            scores.append(UtteranceScores(fields[0], perm, metrics))
    return scores


def merge_score_dirs(split_dirs: Sequence[PathLike], out_dir: PathLike) -> None:
    """Combine the score directories of JOB splits; an utterance scored twice is an error."""
    scored_in: Dict[str, PathLike] = {}
    merged = []
    for split_dir in split_dirs:
        for s in read_scores(split_dir):
            if s.key in scored_in:
                raise DataDirError(
                    f"utterance '{s.key}' scored in both {scored_in[s.key]} and {split_dir}"
                )
            scored_in[s.key] = split_dir
            merged.append(s)
    write_scores(out_dir, merged)


def read_permutation(path: PathLike) -> Dict[str, Tuple[int, ...]]:
    """0-based estimate index for each reference speaker (the file is 1-based)."""
    permutations = {}
    for key, value in read_kv(path).items():
        try:
            permutations[key] = tuple(int(i) - 1 for i in value.split())
        except ValueError as exc:
            raise DataDirError(f"{path}: key '{key}': {exc}") from exc
    return permutations


def read_summary(score_dir: PathLike) -> Dict[str, Optional[float]]:
    path = Path(score_dir) / SUMMARY_FILE
    if not path.is_file():
        raise DataDirError(f"{path}: file not found")
    return json.loads(path.read_text(encoding="utf-8"))
