"""The systems manifest: round trip, replacing a name, and errors naming the file and line."""
import logging
from pathlib import Path

import pytest

from sepalm_espnet.metrics.systems import ManifestError, System, append_system, main, read_systems, score_dir_of

SEP = ("SepFormer (x)", "separator_only", "exp/sep_x/decode/{set}/wav.scp")
COR = ("Corrector x: corrected", "transcript", "exp/cor_x/decode_default/{set}/text_ct")
ALI = ("SepALM (x)", "sepalm", "exp/ali_x/decode_y/{set}/speech.scp")


def test_append_then_read_round_trips_in_order(tmp_path):
    manifest = tmp_path / "exp/systems.tsv"
    assert [append_system(manifest, *system) for system in (SEP, COR, ALI)] == ["added"] * 3
    assert manifest.read_text() == "".join("\t".join(system) + "\n" for system in (SEP, COR, ALI))
    systems = read_systems(manifest)
    assert [(s.name, s.mode, s.path, s.line) for s in systems] == [(*SEP, 1), (*COR, 2), (*ALI, 3)]
    assert systems[0].is_speech and not systems[1].is_speech
    assert systems[0].input_path("test") == Path("exp/sep_x/decode/test/wav.scp")
    assert systems[0].score_dir("test") == Path("exp/sep_x/decode/test/score")
    assert systems[1].score_dir("test") == Path("exp/cor_x/decode_default/test/score/text_ct")


def test_the_same_line_is_not_added_twice_and_a_new_path_replaces_the_name(tmp_path, caplog):
    manifest = tmp_path / "systems.tsv"
    for system in (SEP, COR):
        append_system(manifest, *system)
    before = manifest.read_text()
    assert append_system(manifest, *SEP) == "present"
    assert manifest.read_text() == before
    with caplog.at_level(logging.WARNING):
        assert append_system(manifest, SEP[0], SEP[1], "exp/sep_y/decode/{set}/wav.scp") == "replaced"
    assert f"{manifest}:1: system 'SepFormer (x)' was separator_only {SEP[2]}" in caplog.text
    assert [(s.name, s.path) for s in read_systems(manifest)] == [(SEP[0], "exp/sep_y/decode/{set}/wav.scp"),
                                                                 (COR[0], COR[2])]


@pytest.mark.parametrize("line, message", [
    ("only\ttwo", r"systems.tsv:2: 2 tab-separated fields"),
    ("X\tbogus\tdir/{set}/wav.scp", r"systems.tsv:2: mode 'bogus' is not one of"),
    ("X\tsepalm\tdir/test/wav.scp", r"systems.tsv:2: path 'dir/test/wav.scp' has no \{set\}"),
    ("SepFormer (x)\tsepalm\tother/{set}/wav.scp", r"systems.tsv:2: system 'SepFormer \(x\)' is also on line 1"),
    ("", r"systems.tsv:2: empty line"),
    (" X\tsepalm\tother/{set}/wav.scp", r"systems.tsv:2: name ' X' is empty or has leading/trailing spaces"),
    ("X\tsepalm\texp/sep_x/decode/{set}/speech.scp", r"systems.tsv:2: 'X' would be scored into "
                                                      r"exp/sep_x/decode/\{set\}/score, as line 1"),
])
def test_malformed_lines_name_the_file_and_line(tmp_path, line, message):
    manifest = tmp_path / "systems.tsv"
    manifest.write_text("\t".join(SEP) + "\n" + line + "\n")
    with pytest.raises(ManifestError, match=message):
        read_systems(manifest)
    with pytest.raises(ManifestError, match=message):  # nothing is added to a broken file
        append_system(manifest, *COR)


def test_comments_are_kept_and_bad_new_lines_are_refused(tmp_path):
    manifest = tmp_path / "systems.tsv"
    manifest.write_text("# made by hand\n" + "\t".join(SEP) + "\n")
    append_system(manifest, *COR)
    assert manifest.read_text().startswith("# made by hand\n")
    assert [s.line for s in read_systems(manifest)] == [2, 3]
    with pytest.raises(ManifestError, match="mode 'speech'"):
        append_system(manifest, "Y", "speech", "a/{set}/wav.scp")
    with pytest.raises(ManifestError, match="holds a tab"):
        append_system(manifest, "Y\tZ", "sepalm", "a/{set}/wav.scp")
    with pytest.raises(ManifestError, match=r"would be scored into exp/sep_x/decode/\{set\}/score"):
        append_system(manifest, "Y", "no_aligner", "exp/sep_x/decode/{set}/speech.scp")
    with pytest.raises(ManifestError, match="nowhere.tsv: file not found"):
        read_systems(tmp_path / "nowhere.tsv")


def test_score_dirs_and_the_command_line(tmp_path):
    assert score_dir_of("sepalm", "a/test/speech.scp") == Path("a/test/score")
    assert score_dir_of("transcript", "a/test/text_pt") == Path("a/test/score/text_pt")
    manifest = tmp_path / "systems.tsv"
    main([str(manifest), *ALI])
    assert read_systems(manifest) == [System(*ALI, line=1)]
    with pytest.raises(SystemExit, match=r"has no \{set\}"):
        main([str(manifest), "Z", "sepalm", "a/test/speech.scp"])
