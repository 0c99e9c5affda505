import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sepalm_espnet.data.data_dir import (
    combine_data_dirs,
    find_problems,
    fix_data_dir,
    subset_data_dir,
    validate_data_dir,
)
from sepalm_espnet.data.kaldi_dir import DataDirError, read_kv

REPO = Path(__file__).resolve().parents[2]
UTTS = {"u1": "sa", "u2": "sa", "u3": "sb"}  # utterance -> speaker


def make_data_dir(root: Path, name: str = "x", utts=UTTS) -> Path:
    """A valid two-speaker data dir whose audio files exist (empty: only paths are checked)."""
    data, audio = root / name, root / "audio"
    data.mkdir(parents=True)
    audio.mkdir(exist_ok=True)
    tables = {"wav.scp": "mix", "spk1.scp": "s1", "spk2.scp": "s2", "noise1.scp": "n1"}
    for table, suffix in tables.items():
        lines = []
        for utt in utts:
            (audio / f"{name}_{utt}_{suffix}.wav").touch()
            lines.append(f"{utt} {audio / f'{name}_{utt}_{suffix}.wav'}\n")
        (data / table).write_text("".join(lines))
    (data / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utts.items()))
    speakers = sorted(set(utts.values()))
    (data / "spk2utt").write_text("".join(
        f"{s} {' '.join(u for u in utts if utts[u] == s)}\n" for s in speakers))
    (data / "text_spk1").write_text("".join(f"{u} HELLO {u.upper()}\n" for u in utts))
    (data / "text_spk2").write_text("".join(f"{u}\n" for u in utts))  # empty transcripts
    (data / "utt2num_samples").write_text("".join(f"{u} 16000\n" for u in utts))
    (data / "feats_type").write_text("raw\n")
    return data


@pytest.fixture
def data(tmp_path):
    return make_data_dir(tmp_path)


def edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


def one_problem(data_dir, **kwargs) -> str:
    problems = find_problems(data_dir, **kwargs)
    assert len(problems) == 1, problems
    return problems[0]


def test_valid_dir_has_no_problems(data):
    assert find_problems(data, require_text=True) == []
    validate_data_dir(data)


def test_unsorted_keys_name_file_and_line(data):
    lines = (data / "spk1.scp").read_text().splitlines(keepends=True)
    (data / "spk1.scp").write_text(lines[1] + lines[0] + lines[2])
    assert one_problem(data).startswith(f"{data}/spk1.scp:2: key 'u1' is out of order")


def test_duplicated_key_names_file_and_line(data):
    with open(data / "utt2num_samples", "a") as f:
        f.write("u3 16000\n")
    assert one_problem(data) == f"{data}/utt2num_samples:4: duplicate key 'u3'"


def test_mismatched_keys_name_file_and_line(data):
    edit(data / "text_spk1", "u3 HELLO U3\n", "")
    assert one_problem(data) == f"{data}/text_spk1: key 'u3' of {data}/wav.scp:3 is missing"
    edit(data / "text_spk1", "u2 HELLO U2\n", "u2 HELLO U2\nu4 EXTRA\n")
    assert find_problems(data) == [f"{data}/text_spk1:3: key 'u4' is not in wav.scp",
                                   f"{data}/text_spk1: key 'u3' of {data}/wav.scp:3 is missing"]


def test_missing_audio_names_file_and_line(data, tmp_path):
    (tmp_path / "audio" / "x_u2_s2.wav").unlink()
    assert one_problem(data) == (
        f"{data}/spk2.scp:2: 'u2': audio file '{tmp_path}/audio/x_u2_s2.wav' not found")


def test_commands_are_skipped_and_ark_offsets_need_the_ark(data, tmp_path):
    edit(data / "noise1.scp", f"{tmp_path}/audio/x_u1_n1.wav", "sox in.flac -t wav - |")
    edit(data / "noise1.scp", f"{tmp_path}/audio/x_u2_n1.wav", f"{tmp_path}/feats.ark:123")
    assert one_problem(data) == (
        f"{data}/noise1.scp:2: 'u2': audio file '{tmp_path}/feats.ark' not found")
    (tmp_path / "feats.ark").touch()
    assert find_problems(data) == []


def test_missing_text_names_the_file(data):
    (data / "text_spk2").unlink()
    assert one_problem(data) == f"{data}/text_spk2: file not found (text_spk1 exists)"
    (data / "text_spk1").unlink()
    assert find_problems(data) == []
    assert find_problems(data, require_text=True) == [
        f"{data}/text_spk{n}: file not found (required by --require-text)" for n in (1, 2)]


def test_spk2utt_must_agree_with_utt2spk(data):
    edit(data / "spk2utt", "sa u1 u2", "sa u1")
    assert one_problem(data) == (
        f"{data}/spk2utt:1: speaker 'sa' lists 'u1' but utt2spk gives 'u1 u2'")
    (data / "spk2utt").unlink()
    assert "create it with utils/utt2spk_to_spk2utt.sh" in one_problem(data)


def test_problems_are_all_reported_by_the_shell_wrapper(data):
    edit(data / "utt2num_samples", "u1 16000", "u1 zero")
    (data / "text_spk2").unlink()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([str(REPO / "utils" / "validate_data_dir.sh"), str(data)],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert f"{data}/utt2num_samples:1: 'u1': expected a positive int" in result.stderr
    assert f"{data}/text_spk2: file not found" in result.stderr
    assert "2 problem(s)" in result.stderr


def test_fix_keeps_common_keys_sorts_and_rebuilds_spk2utt(data):
    edit(data / "spk2.scp", "u1 ", "u0 ")  # u1 missing, u0 only here
    lines = (data / "text_spk1").read_text().splitlines(keepends=True)
    (data / "text_spk1").write_text("".join(reversed(lines)))
    dropped = fix_data_dir(data)
    assert dropped["spk2.scp"] == ["u0"]
    assert dropped["wav.scp"] == ["u1"]
    assert find_problems(data) == []
    assert list(read_kv(data / "text_spk1")) == ["u2", "u3"]
    assert read_kv(data / "spk2utt") == {"sa": "u2", "sb": "u3"}
    assert (data / ".backup" / "spk2.scp").read_text().startswith("u0 ")


def test_segments_key_utterances_and_wav_scp_keys_recordings(tmp_path):
    data = tmp_path / "seg"
    data.mkdir()
    (tmp_path / "r1.wav").touch()
    (data / "wav.scp").write_text(f"r1 {tmp_path}/r1.wav\n")
    (data / "reco2dur").write_text("r1 2.0\n")
    (data / "segments").write_text("s1 r1 0 1\ns2 r1 1 2\ns3 r2 0 1\n")
    (data / "utt2spk").write_text("s1 a\ns2 a\ns3 b\n")
    (data / "spk2utt").write_text("a s1 s2\nb s3\n")
    assert one_problem(data) == f"{data}/segments:3: 's3': recording 'r2' is not in wav.scp"
    assert fix_data_dir(data) == {"segments": ["s3"], "utt2spk": ["s3"], "spk2utt": ["b"]}
    assert find_problems(data) == []
    assert read_kv(data / "spk2utt") == {"a": "s1 s2"}


@pytest.mark.parametrize("selection, expected", [
    ({"first": 2}, ["u1", "u2"]),
    ({"last": 1}, ["u3"]),
    ({"random_count": 2, "seed": 3}, None),
])
def test_subset_selects_and_stays_valid(data, tmp_path, selection, expected):
    chosen = subset_data_dir(data, tmp_path / "sub", **selection)
    if expected is not None:
        assert chosen == expected
    assert chosen == sorted(chosen) and len(chosen) == len(set(chosen)) == 2 - ("last" in selection)
    assert list(read_kv(tmp_path / "sub" / "wav.scp")) == chosen
    assert find_problems(tmp_path / "sub") == []
    assert (tmp_path / "sub" / "feats_type").read_text() == "raw\n"
    if "random_count" in selection:
        assert subset_data_dir(data, tmp_path / "again", **selection) == chosen


def test_subset_by_key_file(data, tmp_path):
    (tmp_path / "keys").write_text("u3\nu1\n")
    assert subset_data_dir(data, tmp_path / "sub", key_file=tmp_path / "keys") == ["u1", "u3"]
    assert read_kv(tmp_path / "sub" / "spk2utt") == {"sa": "u1", "sb": "u3"}
    (tmp_path / "keys").write_text("u1\nu7\n")
    with pytest.raises(DataDirError, match=r"keys:2: key 'u7' is not in the source"):
        subset_data_dir(data, tmp_path / "sub", key_file=tmp_path / "keys")
    with pytest.raises(DataDirError, match="cannot select 4 of 3"):
        subset_data_dir(data, tmp_path / "sub", first=4)


def test_combine_with_prefixes_is_sorted_and_valid(tmp_path):
    a = make_data_dir(tmp_path, "a")
    b = make_data_dir(tmp_path, "b", {"u0": "sa", "u9": "sc"})
    (b / "text_spk1").unlink()
    (b / "text_spk2").unlink()
    left_out = combine_data_dirs(tmp_path / "all", [a, b], prefixes=["a_", "b_"])
    assert left_out == ["text_spk1", "text_spk2"]
    all_dir = tmp_path / "all"
    assert list(read_kv(all_dir / "wav.scp")) == ["a_u1", "a_u2", "a_u3", "b_u0", "b_u9"]
    assert read_kv(all_dir / "spk2utt")["b_sa"] == "b_u0"
    assert find_problems(all_dir) == []
    with pytest.raises(DataDirError, match="utterance 'u1' is in both"):
        combine_data_dirs(tmp_path / "twice", [a, a])


def test_spk2utt_round_trip_through_the_shell_wrappers(data, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    to_spk2utt = [str(REPO / "utils" / "utt2spk_to_spk2utt.sh"), str(data / "utt2spk")]
    printed = subprocess.run(to_spk2utt, env=env, capture_output=True, text=True, check=True)
    assert printed.stdout == (data / "spk2utt").read_text() == "sa u1 u2\nsb u3\n"
    to_utt2spk = [str(REPO / "utils" / "spk2utt_to_utt2spk.sh"), str(data / "spk2utt"),
                  str(tmp_path / "utt2spk")]
    subprocess.run(to_utt2spk, env=env, check=True)
    assert (tmp_path / "utt2spk").read_text() == (data / "utt2spk").read_text()


@pytest.mark.parametrize("key", ["../../../x", "/abs/x"])
def test_path_like_keys_are_refused_by_validate_and_fix(data, key):
    edit(data / "wav.scp", "u1 ", f"{key} ")
    assert f"{data}/wav.scp:1: key '{key}' " in find_problems(data)[0]
    with pytest.raises(DataDirError, match=f"wav.scp:1: key '{key}' "):
        validate_data_dir(data)
    with pytest.raises(DataDirError, match=f"wav.scp:1: key '{key}' "):
        fix_data_dir(data)


def test_path_like_speaker_in_utt2spk_is_refused(data):
    edit(data / "utt2spk", "u3 sb", "u3 ../sb")
    assert f"{data}/utt2spk:3: speaker '../sb' " in find_problems(data)[0]
    with pytest.raises(DataDirError, match="utt2spk:3: speaker '../sb' "):
        fix_data_dir(data)


def test_non_utf8_transcript_is_a_problem_naming_file_and_line(data):
    (data / "text_spk1").write_bytes("u1 A\nu2 CAF\u00c9\nu3 B\n".encode("latin-1"))
    assert f"{data}/text_spk1:2: not UTF-8" in one_problem(data)
    with pytest.raises(DataDirError, match="text_spk1:2: not UTF-8"):
        fix_data_dir(data)


def make_audio_dir(root: Path, fs: int = 16000, frames: int = 16000) -> Path:
    """A valid dir whose audio files are real (for check_audio): every source as long as its mix."""
    data = make_data_dir(root)
    for table in ("wav.scp", "spk1.scp", "spk2.scp", "noise1.scp"):
        for path in read_kv(data / table).values():
            sf.write(path, np.full(frames, 0.1), fs, subtype="PCM_16")
    (data / "utt2num_samples").write_text("".join(f"{u} {frames}\n" for u in UTTS))
    return data


def truncate(path: str, frames: int) -> None:
    """Cut a 16-bit mono wav's data chunk short, leaving its header as it was."""
    with open(path, "r+b") as f:
        f.truncate(44 + 2 * frames)


def test_check_audio_accepts_matching_lengths_and_skips_pipes(tmp_path):
    data = make_audio_dir(tmp_path)
    edit(data / "noise1.scp", f"{tmp_path}/audio/x_u3_n1.wav", "sox in.flac -t wav - |")
    assert find_problems(data, check_audio=True) == []
    validate_data_dir(data, check_audio=True)


def test_check_audio_refuses_a_truncated_wav(tmp_path):
    data = make_audio_dir(tmp_path)
    truncate(read_kv(data / "spk1.scp")["u2"], 500)
    assert find_problems(data) == []  # the header is only read with check_audio
    problems = find_problems(data, check_audio=True)
    assert problems[0] == (f"{data}/spk1.scp:2: 'u2': {tmp_path}/audio/x_u2_s1.wav: the header "
                           f"says 16000 frames but the file holds 500 (truncated?)")
    assert len(problems) == 1, problems  # not also reported as a length mismatch


def test_check_audio_refuses_references_and_noise_of_another_length_or_rate(tmp_path):
    data = make_audio_dir(tmp_path)
    sf.write(read_kv(data / "spk2.scp")["u2"], np.full(160, 0.1), 16000)  # 10 ms
    sf.write(read_kv(data / "noise1.scp")["u3"], np.full(16000, 0.1), 8000)
    assert find_problems(data, check_audio=True) == [
        f"{data}/noise1.scp:3: 'u3': 16000 samples at 8000 Hz, but the mixture "
        f"{data}/wav.scp:3 has 16000 samples at 16000 Hz",
        f"{data}/spk2.scp:2: 'u2': 160 samples at 16000 Hz, but the mixture "
        f"{data}/wav.scp:2 has 16000 samples at 16000 Hz",
    ]


def test_check_audio_compares_utt2num_samples_with_the_mixture(tmp_path):
    data = make_audio_dir(tmp_path)
    edit(data / "utt2num_samples", "u2 16000", "u2 15999")
    assert find_problems(data, check_audio=True) == [
        f"{data}/utt2num_samples:2: 'u2': 15999 samples, but the mixture {data}/wav.scp:2 "
        f"has 16000"]


def test_check_audio_through_the_shell_wrapper(tmp_path):
    data = make_audio_dir(tmp_path)
    sf.write(read_kv(data / "spk1.scp")["u1"], np.full(160, 0.1), 16000)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = str(REPO / "utils" / "validate_data_dir.sh")
    assert subprocess.run([script, str(data)], env=env, capture_output=True).returncode == 0
    result = subprocess.run([script, "--check_audio", str(data)], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert f"{data}/spk1.scp:1: 'u1': 160 samples at 16000 Hz" in result.stderr
