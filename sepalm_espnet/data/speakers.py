"""Per-speaker Kaldi files in one speaker order, and one file over all speakers.

A separator writes spk<n>.scp in its own output order. Stage 4 matches estimates to references
once (the `permutation` file: for each reference speaker, the 1-based estimate it matched) and
writes the flat per-estimate files in reference order (`estimate_tables`): key `<utt>_spk<n>` is
reference speaker n and the estimate matched to it, whichever separator made it, so every
separator's outputs pair the same keys with the same references. `reorder` puts reference-side
files into a separator's own output order (for files kept in that order, spk<n>.scp).

The corrector, synthesizer and aligner train on one example per separated speaker, so their
data files hold all speakers under keys `<utt>_spk<n>` (`flatten`); `unflatten` splits an
output back into spk<n> files for scoring.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, List, Mapping, Sequence

from sepalm_espnet.data.kaldi_dir import DataDirError

SPEAKER_KEY = re.compile(r"^(?P<utt>.+)_spk(?P<n>[1-9][0-9]*)$")


def speaker_key(utt: str, speaker: int) -> str:
    """Key of speaker `speaker` (1-based) of utterance `utt` in a flattened file."""
    return f"{utt}_spk{speaker}"


def value_of_estimate(key: str, entries: Mapping[str, str], where: str) -> str:
    """The entry of estimate `key` in a file keyed by estimate or by utterance (`<utt>` of
    `<utt>_spk<n>`, e.g. a data dir's wav.scp of mixtures)."""
    if key in entries:
        return entries[key]
    match = SPEAKER_KEY.match(key)
    if match is None or match["utt"] not in entries:
        raise DataDirError(f"{where}: no entry for '{key}' (neither it nor its utterance is a key)")
    return entries[match["utt"]]


def per_estimate(entries: Mapping[str, str], estimate_keys: Iterable[str], where: str) -> Dict[str, str]:
    """`entries` (keyed by utterance) keyed like the estimates, for tasks that load them together."""
    return {key: value_of_estimate(key, entries, where) for key in sorted(estimate_keys)}


def reorder(
    per_reference: Sequence[Mapping[str, str]], permutation: Mapping[str, Sequence[int]], where: str
) -> List[Dict[str, str]]:
    """Reference-ordered files -> estimate-ordered files (`permutation` 0-based, as read_permutation)."""
    n_spk = len(per_reference)
    out: List[Dict[str, str]] = [{} for _ in range(n_spk)]
    for utt, perm in permutation.items():
        if sorted(perm) != list(range(n_spk)):
            raise DataDirError(f"{where}: utterance '{utt}': {list(perm)} is not a permutation of {n_spk} speakers")
        for reference, estimate in enumerate(perm):
            if utt not in per_reference[reference]:
                raise DataDirError(f"{where}: utterance '{utt}' missing from reference speaker {reference + 1}")
            out[estimate][utt] = per_reference[reference][utt]
    return out


def flatten(per_speaker: Sequence[Mapping[str, str]]) -> Dict[str, str]:
    """spk<n> files -> one file with `<utt>_spk<n>` keys, sorted."""
    merged = {
        speaker_key(utt, n): value
        for n, entries in enumerate(per_speaker, start=1)
        for utt, value in entries.items()
    }
    return dict(sorted(merged.items()))


def unflatten(entries: Mapping[str, str], n_spk: int, where: str) -> List[Dict[str, str]]:
    """Inverse of `flatten`; every utterance must have all `n_spk` speakers."""
    out: List[Dict[str, str]] = [{} for _ in range(n_spk)]
    for key, value in entries.items():
        match = SPEAKER_KEY.match(key)
        if match is None or int(match["n"]) > n_spk:
            raise DataDirError(f"{where}: key '{key}' is not <utterance>_spk<1..{n_spk}>")
        out[int(match["n"]) - 1][match["utt"]] = value
    utterances = set().union(*out)
    for n, speaker in enumerate(out, start=1):
        missing = sorted(utterances - set(speaker))
        if missing:
            raise DataDirError(f"{where}: utterance '{missing[0]}' has no speaker {n} ('{speaker_key(missing[0], n)}')")
    return [dict(sorted(speaker.items())) for speaker in out]


def estimate_tables(
    estimates: Sequence[Mapping[str, str]],
    permutation: Mapping[str, Sequence[int]],
    references: Sequence[Mapping[str, str]],
    transcripts: Sequence[Mapping[str, str]],
    where: str,
) -> Dict[str, Dict[str, str]]:
    """The per-estimate data dir of stage 4: wav.scp (ŝ), ref.scp (s matched to it), text (its
    transcript), all keyed <utt>_spk<n> in reference order (reference n and the estimate matched
    to it), so later stages need no speaker logic and the dirs of two separators share ref.scp
    and text (stage 14 scores every system against one of them)."""
    tables = {"wav.scp": flatten(in_reference_order(estimates, permutation, where))}
    if references:
        tables["ref.scp"] = flatten(references)
    if transcripts:
        tables["text"] = flatten(transcripts)
    return tables


def in_reference_order(
    per_estimate_files: Sequence[Mapping[str, str]], permutation: Mapping[str, Sequence[int]], where: str
) -> List[Dict[str, str]]:
    """Estimate-ordered files -> reference-ordered ones: entry n is the estimate reference n matched
    (`reorder` with the inverse permutation)."""
    n_spk = len(per_estimate_files)
    inverse = {}
    for utt, perm in permutation.items():
        if sorted(perm) != list(range(n_spk)):
            raise DataDirError(f"{where}: utterance '{utt}': {list(perm)} is not a permutation of {n_spk} speakers")
        inverse[utt] = [perm.index(estimate) for estimate in range(n_spk)]
    return reorder(per_estimate_files, inverse, where)
