import os
import subprocess
from pathlib import Path

import pytest

from sepalm_espnet.data.kaldi_dir import DataDirError
from sepalm_espnet.utils.split_scp import split_lines, split_scp

REPO = Path(__file__).resolve().parents[2]


def test_split_lines_is_contiguous_and_balanced():
    lines = [f"utt{i}" for i in range(10)]
    pieces = split_lines(lines, 4)
    assert [len(p) for p in pieces] == [3, 3, 2, 2]
    assert sum(pieces, []) == lines


def test_split_scp_writes_each_piece(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"u{i} /a/{i}.wav\n" for i in range(5)))
    outs = [tmp_path / "split" / f"keys.{n}.scp" for n in (1, 2)]
    split_scp(scp, outs)
    assert outs[0].read_text() == "u0 /a/0.wav\nu1 /a/1.wav\nu2 /a/2.wav\n"
    assert outs[1].read_text() == "u3 /a/3.wav\nu4 /a/4.wav\n"


def test_split_scp_errors(tmp_path):
    scp = tmp_path / "keys.scp"
    scp.write_text("a\nb\n")
    with pytest.raises(DataDirError, match="cannot split 2 lines into 3"):
        split_scp(scp, [tmp_path / f"{n}.scp" for n in range(3)])
    scp.write_text("a\n\nb\n")
    with pytest.raises(DataDirError, match=r"keys.scp:2: empty line"):
        split_scp(scp, [tmp_path / "1.scp"])


def test_split_scp_sh(tmp_path):
    (tmp_path / "in.scp").write_text("a 1\nb 2\nc 3\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [str(REPO / "utils" / "split_scp.sh"), "in.scp", "o.1.scp", "o.2.scp"]
    subprocess.run(command, cwd=tmp_path, env=env, check=True)
    assert (tmp_path / "o.2.scp").read_text() == "c 3\n"
    command.append("o.3.scp")
    command.append("o.4.scp")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 1 and "cannot split 3 lines into 4" in result.stderr


def test_empty_input_is_named(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("")
    with pytest.raises(DataDirError, match=r"wav.scp: no entries to split"):
        split_scp(scp, [tmp_path / "1.scp"])
    with pytest.raises(DataDirError, match=r"wav.scp: no entries to split"):
        split_scp(scp, [])


def test_non_utf8_input_names_file_and_line(tmp_path):
    scp = tmp_path / "text"
    scp.write_bytes("a A\nb CAF\u00c9\n".encode("latin-1"))
    with pytest.raises(DataDirError, match=r"text:2: not UTF-8"):
        split_scp(scp, [tmp_path / "1.scp"])


def test_split_scp_sh_of_an_empty_scp(tmp_path):
    """The recipe asks for min(nj, lines) = 0 pieces: the error must name the empty file."""
    (tmp_path / "wav.scp").write_text("")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([str(REPO / "utils" / "split_scp.sh"), "wav.scp"], cwd=tmp_path,
                            env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == "split_scp: wav.scp: no entries to split\n"
