"""One process runs a bin over several argument sets (the recipe's multi-set jobs)."""
import pytest

from sepalm_espnet.bin import run_many
from sepalm_espnet.data.kaldi_dir import read_text, write_kv


def test_each_plan_line_is_one_run_after_the_common_arguments(tmp_path):
    for name in ("a", "b"):
        write_kv(tmp_path / f"{name}.txt", {f"{name}1": "cat"})
    (tmp_path / "plan").write_text(f"--text\t{tmp_path}/a.txt\t--output_dir\t{tmp_path}/out_a\n"
                                   f"--text\t{tmp_path}/b.txt\t--output_dir\t{tmp_path}/out_b\n")
    run_many.main(["--plan", str(tmp_path / "plan"), "sepalm_espnet.bin.g2p", "--language", "en-us"])
    assert read_text(tmp_path / "out_a/phonemes") == {"a1": "k æ t"}
    assert list(read_text(tmp_path / "out_b/phonemes")) == ["b1"]


def test_a_failing_run_stops_the_job_and_is_named(tmp_path, capsys):
    (tmp_path / "plan").write_text(f"--text\t{tmp_path}/missing.txt\t--output_dir\t{tmp_path}/out\n")
    with pytest.raises(SystemExit):
        run_many.main(["--plan", str(tmp_path / "plan"), "sepalm_espnet.bin.g2p"])
    assert "run 1 of" in capsys.readouterr().err


def test_an_empty_plan_imports_nothing(tmp_path):
    (tmp_path / "plan").write_text("")
    run_many.main(["--plan", str(tmp_path / "plan"), "sepalm_espnet.no_such_module"])
