import os
import re
from pathlib import Path

import pytest

from sepalm_espnet.data.kaldi_dir import (
    DataDirError,
    atomic_path,
    read_kv,
    read_text,
    spk2utt_to_utt2spk,
    utt2spk_to_spk2utt,
    write_kv,
)


def test_write_kv_sorts_and_read_kv_keeps_values_with_spaces(tmp_path):
    write_kv(tmp_path / "wav.scp", {"b": "sox b.wav -t wav - |", "a": "a.wav"})
    assert (tmp_path / "wav.scp").read_text() == "a a.wav\nb sox b.wav -t wav - |\n"
    assert read_kv(tmp_path / "wav.scp") == {"a": "a.wav", "b": "sox b.wav -t wav - |"}


@pytest.mark.parametrize(
    "content, message",
    [
        ("a x\na y\n", r"wav.scp:2: duplicate key 'a'"),
        ("a x\nb\n", r"wav.scp:2: key 'b' has no value"),
        ("a x\n\nb y\n", r"wav.scp:2: empty line"),
    ],
)
def test_read_kv_names_file_and_line(tmp_path, content, message):
    (tmp_path / "wav.scp").write_text(content)
    with pytest.raises(DataDirError, match=message):
        read_kv(tmp_path / "wav.scp")


def test_read_text_allows_empty_transcripts(tmp_path):
    (tmp_path / "text").write_text("a HELLO WORLD\nb\n")
    assert read_text(tmp_path / "text") == {"a": "HELLO WORLD", "b": ""}


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataDirError, match="nothere: file not found"):
        read_kv(tmp_path / "nothere")


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_output_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_kv(tmp_path / "utt2spk", {"a": "a"})
    finally:
        os.umask(old)
    assert (tmp_path / "utt2spk").stat().st_mode & 0o777 == 0o644


def test_invalid_key_is_refused(tmp_path):
    with pytest.raises(DataDirError, match="invalid key"):
        write_kv(tmp_path / "x", {"a b": "v"})
    assert not (tmp_path / "x").exists()


def test_spk2utt_round_trip():
    utt2spk = {"u2": "s1", "u1": "s1", "u3": "s2"}
    spk2utt = utt2spk_to_spk2utt(utt2spk)
    assert spk2utt == {"s1": ["u1", "u2"], "s2": ["u3"]}
    assert spk2utt_to_utt2spk(spk2utt) == dict(sorted(utt2spk.items()))
    with pytest.raises(DataDirError, match="under two speakers"):
        spk2utt_to_utt2spk({"s1": ["u1"], "s2": ["u1"]})


def test_merge_kv_files_joins_splits_and_names_a_key_written_twice(tmp_path):
    from sepalm_espnet.data.kaldi_dir import merge_kv_files

    write_kv(tmp_path / "a", {"u1": "x"})
    write_kv(tmp_path / "b", {"u2": "y"})
    assert merge_kv_files([tmp_path / "a", tmp_path / "b"]) == {"u1": "x", "u2": "y"}
    write_kv(tmp_path / "c", {"u1": "z"})
    with pytest.raises(DataDirError, match="c: key 'u1' also in an earlier split, .*a"):
        merge_kv_files([tmp_path / "a", tmp_path / "c"])


@pytest.mark.parametrize("key", ["u1", "a.b", "utt0_spk1", "1089-134686-0000_121-121726-0000",
                                 "_x", "A9"])
def test_check_key_accepts_ids(key):
    from sepalm_espnet.data.kaldi_dir import check_key

    check_key(key, "wav.scp:1")


@pytest.mark.parametrize("key", ["../../../x", "/abs/x", "a/b", ".hidden", "..", "-x", "a:b",
                                 "caf\u00e9", ""])
def test_check_key_refuses_keys_that_are_not_safe_file_names(key):
    from sepalm_espnet.data.kaldi_dir import check_key

    with pytest.raises(DataDirError, match=r"^wav.scp:3: key '.*' "):
        check_key(key, "wav.scp:3")


@pytest.mark.parametrize("key", ["../../../x", "/abs/x", ".x"])
def test_readers_refuse_path_like_keys_naming_file_and_line(tmp_path, key):
    (tmp_path / "wav.scp").write_text(f"u1 a.wav\n{key} b.wav\n")
    with pytest.raises(DataDirError, match=rf"wav.scp:2: key '{re.escape(key)}' "):
        read_kv(tmp_path / "wav.scp")
    (tmp_path / "text_spk1").write_text(f"u1 HELLO\n{key}\n")
    with pytest.raises(DataDirError, match=rf"text_spk1:2: key '{re.escape(key)}' "):
        read_text(tmp_path / "text_spk1")


def test_non_utf8_file_names_file_and_line(tmp_path):
    (tmp_path / "text_spk1").write_bytes("u1 HELLO\nu2 CAF\u00c9 AU LAIT\n".encode("latin-1"))
    with pytest.raises(DataDirError, match=r"text_spk1:2: not UTF-8"):
        read_text(tmp_path / "text_spk1")
    with pytest.raises(DataDirError, match=r"text_spk1:2: not UTF-8"):
        read_kv(tmp_path / "text_spk1")


def test_windows_line_endings_are_read_as_before(tmp_path):
    (tmp_path / "wav.scp").write_bytes(b"a a.wav\r\nb b.wav\r\n")
    assert read_kv(tmp_path / "wav.scp") == {"a": "a.wav", "b": "b.wav"}


def test_a_byte_order_mark_is_not_part_of_the_first_key(tmp_path):
    (tmp_path / "wav.scp").write_bytes("\ufeffa a.wav\n".encode("utf-8"))
    assert read_kv(tmp_path / "wav.scp") == {"a": "a.wav"}


def test_relocated_tables_name_the_moved_files_and_leave_others(tmp_path, monkeypatch):
    from sepalm_espnet.data.kaldi_dir import relocate_tables

    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.old/sub").mkdir(parents=True)
    write_kv(tmp_path / "d.old/sub/x.scp", {"a": f"{tmp_path}/d/w/a.wav", "b": "d/w/b.wav:12", "c": "/data/c.wav"})
    write_kv(tmp_path / "d.old/text", {"a": "d/w/a.wav is not a table"})
    assert relocate_tables("d", "d.old") == [Path("d.old/sub/x.scp")]
    assert read_kv(tmp_path / "d.old/sub/x.scp") == {"a": f"{tmp_path}/d.old/w/a.wav", "b": "d.old/w/b.wav:12",
                                                     "c": "/data/c.wav"}
    assert read_kv(tmp_path / "d.old/text") == {"a": "d/w/a.wav is not a table"}
    assert relocate_tables("d", "d.old") == []  # nothing left to move
