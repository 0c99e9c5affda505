"""The one-call CLI refuses bad input before it loads any model."""
import pytest

from sepalm_espnet.bin import sepalm_separate


@pytest.mark.parametrize("key", ["../../../x", "/abs/x", "-x"])
def test_wav_scp_keys_that_are_not_file_names_are_refused_before_loading(tmp_path, key):
    (tmp_path / "wav.scp").write_text(f"ok {tmp_path}/a.wav\n{key} {tmp_path}/b.wav\n")
    with pytest.raises(SystemExit, match=r"wav.scp:2: key .* is not a valid id"):
        sepalm_separate.main(["--wav_scp", str(tmp_path / "wav.scp"), "--model", str(tmp_path / "no_model.zip"),
                              "--outdir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
