"""Model-zoo archives: layout, portable configs, and refusal of unsafe or tampered archives."""
import hashlib
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import yaml

from sepalm_espnet import zoo
from sepalm_espnet.bin import pack_model


class Payload:
    """Any class instance: unpickling it means running code chosen by the file's author."""


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A training run as ESPnet leaves it, paths relative to the recipe dir (the cwd)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dump/raw/train").mkdir(parents=True)
    (tmp_path / "dump/raw/train/wav.scp").write_text("utt1 a.wav\n")
    (tmp_path / "exp/stats").mkdir(parents=True)
    (tmp_path / "exp/stats/feats_stats.npz").write_bytes(b"stats")
    (tmp_path / "exp/sep").mkdir()
    config = {
        "config": "conf/train.yaml",
        "output_dir": "exp/sep",
        "train_data_path_and_name_and_type": [["dump/raw/train/wav.scp", "speech_mix", "sound"]],
        "train_shape_file": ["exp/stats/train/speech_mix_shape"],
        "init_param": [],
        "dist_init_method": "env://",
        "sample_rate": 8000,
        "normalize_conf": {"stats_file": "exp/stats/feats_stats.npz"},
        "separator_conf": {"num_spk": 2},
    }
    (tmp_path / "exp/sep/config.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    torch.save({"layer.weight": torch.randn(3, 4), "layer.bias": torch.randn(3)}, tmp_path / "exp/sep/model.pth")
    (tmp_path / "RESULTS.md").write_text("| set | SI-SNRi |\n|---|---|\n| test | 12.3 |\n")
    return tmp_path


def separator(run_dir):
    return {zoo.CONFIG_ROLE: run_dir / "exp/sep/config.yaml", zoo.MODEL_ROLE: run_dir / "exp/sep/model.pth"}


@pytest.fixture
def archive(run_dir):
    return zoo.pack(run_dir / "packed/sep.zip", {"separator": separator(run_dir)}, results_md=run_dir / "RESULTS.md")


def rebuild(archive, out, edit, compression=zipfile.ZIP_STORED):
    """Copy `archive` to `out` after `edit(members)` changed its {name: bytes} (meta.yaml included)."""
    with zipfile.ZipFile(archive) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    edit(members)
    with zipfile.ZipFile(out, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out


def add_listed_member(name, data=b"evil"):
    """An edit adding `name` and listing it in meta.yaml with a correct checksum."""
    def edit(members):
        meta = yaml.safe_load(members[zoo.META_NAME])
        meta["checksums"][name] = hashlib.sha256(data).hexdigest()
        meta["files"][name] = name
        members[zoo.META_NAME] = yaml.safe_dump(meta).encode()
        members[name] = data
    return edit


def test_pack_layout_meta_and_model_card(archive, run_dir):
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        meta = yaml.safe_load(zf.read(zoo.META_NAME))
        card = zf.read("README.md").decode()
        for name, checksum in meta["checksums"].items():
            assert hashlib.sha256(zf.read(name)).hexdigest() == checksum, name
        weights = safetensors.torch.load(zf.read("separator/model.safetensors"))
    assert names == {
        "meta.yaml", "README.md", "RESULTS.md", "separator/config.yaml", "separator/model.safetensors",
        "separator/normalize_conf.stats_file.npz",
    }
    assert set(meta["checksums"]) == names - {"meta.yaml"}
    assert meta["files"] == {name: name for name in meta["checksums"]} and meta["yaml_files"] == {}  # espnet_model_zoo
    assert meta["format_version"] == zoo.FORMAT_VERSION
    assert set(meta["versions"]) >= {"sepalm_espnet", "espnet", "torch"}
    assert meta["components"]["separator"]["model"] == "separator/model.safetensors"
    original = torch.load(run_dir / "exp/sep/model.pth", weights_only=True)
    assert weights.keys() == original.keys() and all(torch.equal(weights[k], original[k]) for k in original)
    assert 'SeparatorModel.from_pretrained("sep.zip")' in card and "| test | 12.3 |" in card


def test_config_keeps_no_path_outside_the_archive(archive, tmp_path):
    root = zoo.unpack(archive, tmp_path / "unpacked")
    packed = yaml.safe_load((root / "separator/config.yaml").read_text())
    assert packed["output_dir"] is None and packed["train_data_path_and_name_and_type"] == []
    assert packed["dist_init_method"] == "env://" and packed["sample_rate"] == 8000
    assert packed["normalize_conf"]["stats_file"] == "separator/normalize_conf.stats_file.npz"
    config = zoo.load_component_config(root, "separator")
    assert config["normalize_conf"]["stats_file"] == str(root / "separator/normalize_conf.stats_file.npz")
    assert (root / "separator/normalize_conf.stats_file.npz").read_bytes() == b"stats"


def test_missing_absolute_path_in_config_is_refused(run_dir):
    config_path = run_dir / "exp/sep/config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["bpemodel"] = "/nonexistent/bpe.model"
    config_path.write_text(yaml.safe_dump(config))
    with pytest.raises(zoo.ArchiveError, match="bpemodel"):
        zoo.pack(run_dir / "x.zip", {"separator": separator(run_dir)})
    assert not (run_dir / "x.zip").exists()


def test_extra_roles_and_config_overrides(run_dir, tmp_path):
    (run_dir / "km.mdl").write_bytes(b"kmeans")
    files = {**separator(run_dir), "kmeans": run_dir / "km.mdl"}
    archive = zoo.pack(run_dir / "x.zip", {"corrector": files}, config_overrides={"corrector": {"sample_rate": 16000}})
    root = zoo.unpack(archive, tmp_path / "unpacked")
    paths = zoo.component_files(root, "corrector")
    assert paths["kmeans"].read_bytes() == b"kmeans"
    assert zoo.load_component_config(root, "corrector")["sample_rate"] == 16000


def test_pack_model_cli(run_dir, tmp_path):
    pack_model.main([
        "--out", str(run_dir / "exp/packed/sep.zip"), "--separator_config", "exp/sep/config.yaml",
        "--separator_model", "exp/sep/model.pth", "--results", "RESULTS.md", "--separator_fs", "16000",
    ])
    root = zoo.unpack(run_dir / "exp/packed/sep.zip", tmp_path / "unpacked")
    assert zoo.load_component_config(root, "separator")["sample_rate"] == 16000
    assert zoo.read_meta(root)["extra"]["packed_from"]["separator_model"] == "exp/sep/model.pth"
    assert [p.name for p in (run_dir / "exp/packed").iterdir()] == ["sep.zip"]  # no temporaries left


def test_pickled_object_in_weights_is_refused(run_dir):
    torch.save({"layer.weight": torch.zeros(1), "payload": Payload()}, run_dir / "exp/sep/model.pth")
    with pytest.raises(zoo.UnsafeWeightsError, match="model.pth"):
        zoo.read_state_dict(run_dir / "exp/sep/model.pth")
    with pytest.raises(zoo.UnsafeWeightsError):
        zoo.pack(run_dir / "x.zip", {"separator": separator(run_dir)})


def test_tampered_member_is_refused_by_name(archive, tmp_path):
    def tamper(members):
        members["separator/config.yaml"] += b"\nextra_key: 1\n"

    tampered = rebuild(archive, tmp_path / "tampered.zip", tamper)
    with pytest.raises(zoo.ArchiveError, match="separator/config.yaml fails its SHA-256"):
        zoo.unpack(tampered, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["../evil", "separator/../../evil", "/tmp/evil", "C:/evil", "a\\..\\evil"])
def test_member_escaping_the_destination_is_refused(archive, tmp_path, name):
    evil = rebuild(archive, tmp_path / "evil.zip", add_listed_member(name))
    with pytest.raises(zoo.ArchiveError, match="refusing member"):
        zoo.unpack(evil, tmp_path / "out")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out").exists()


def test_unlisted_member_and_symlink_are_refused(archive, tmp_path):
    def add_unlisted(members):
        members["separator/extra.bin"] = b"x"

    with pytest.raises(zoo.ArchiveError, match="not listed.*separator/extra.bin"):
        zoo.unpack(rebuild(archive, tmp_path / "unlisted.zip", add_unlisted), tmp_path / "out")

    link = rebuild(archive, tmp_path / "link.zip", add_listed_member("separator/link", b"/etc/passwd"))
    with zipfile.ZipFile(link) as zf:
        members = [(info, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(link, "w") as zf:
        for info, data in members:
            if info.filename == "separator/link":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, data)
    with pytest.raises(zoo.ArchiveError, match="symlink"):
        zoo.unpack(link, tmp_path / "out")


def test_unpack_is_idempotent_and_cached_by_checksum(archive, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = zoo.unpack(archive)
    assert root == tmp_path / "cache/sepalm_espnet" / zoo.sha256_file(archive)
    weights = root / "separator/model.safetensors"
    before = os.stat(weights)
    assert zoo.unpack(archive) == root
    after = os.stat(weights)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in root.parent.iterdir()) == [root.name]  # no staging dirs left

    (tmp_path / "other").mkdir()
    (tmp_path / "other/file").write_text("x")
    with pytest.raises(zoo.ArchiveError, match="does not hold"):
        zoo.unpack(archive, tmp_path / "other")


@pytest.fixture
def system_files(run_dir):
    """The other components of a full SepALM system, as their stages leave them."""
    (run_dir / "exp/kmeans").mkdir(parents=True)
    np.save(run_dir / "exp/kmeans/centers.npy", np.arange(12, dtype=np.float32).reshape(4, 3))
    (run_dir / "exp/kmeans/kmeans.yaml").write_text("n_clusters: 4\nlayer: 11\n")
    tokenizer = run_dir / "exp/cor/tokenizer"
    (tokenizer / "sub").mkdir(parents=True)
    (tokenizer / "tokenizer.json").write_text('{"model": "bpe"}')
    (tokenizer / "sub/special_tokens_map.json").write_text("{}")
    (run_dir / "exp/codec").mkdir()
    torch.save({"state_dict": {"w": torch.ones(2)}, "metadata": {"kwargs": {"sample_rate": 16000}}},
               run_dir / "exp/codec/codec.pth")  # DAC's weights layout (synthesizer.codec.load_dac)
    (run_dir / "tokens.txt").write_text("<blank>\nA\n")
    return run_dir


def test_pack_model_cli_packs_a_multi_component_system(system_files, tmp_path):
    run_dir = system_files
    pack_model.main([
        "--out", "exp/packed/sepalm.zip",
        "--component", "separator:config=exp/sep/config.yaml,model=exp/sep/model.pth",
        "--component", "kmeans:centers=exp/kmeans/centers.npy,kmeans=exp/kmeans/kmeans.yaml",
        "--component", "corrector:config=exp/sep/config.yaml,model=exp/sep/model.pth,tokenizer=exp/cor/tokenizer",
        "--component", "codec:codec=exp/codec/codec.pth",
        "--component_file", "tokens", "units", "tokens.txt", "--results", "RESULTS.md",
    ])
    root = zoo.unpack(run_dir / "exp/packed/sepalm.zip", tmp_path / "unpacked")
    meta = zoo.read_meta(root)
    assert list(meta["components"]) == ["separator", "kmeans", "corrector", "codec", "tokens"]
    for name, checksum in meta["checksums"].items():
        assert zoo.sha256_file(root / name) == checksum, name
    kmeans = zoo.component_files(root, "kmeans")
    assert kmeans["centers"] == root / "kmeans/centers.npy"
    np.testing.assert_array_equal(np.load(kmeans["centers"]), np.load(run_dir / "exp/kmeans/centers.npy"))
    assert kmeans["kmeans"].read_bytes() == (run_dir / "exp/kmeans/kmeans.yaml").read_bytes()
    tokenizer = zoo.component_files(root, "corrector")["tokenizer"]
    assert sorted(p.relative_to(tokenizer).as_posix() for p in tokenizer.rglob("*") if p.is_file()) == [
        "sub/special_tokens_map.json", "tokenizer.json"]
    assert (tokenizer / "tokenizer.json").read_bytes() == (run_dir / "exp/cor/tokenizer/tokenizer.json").read_bytes()
    codec = zoo.component_files(root, "codec")["codec"]
    assert codec.read_bytes() == (run_dir / "exp/codec/codec.pth").read_bytes()
    assert zoo.component_files(root, "tokens")["units"].read_text() == "<blank>\nA\n"
    assert 'SeparatorModel.from_pretrained("sepalm.zip")' in (root / "README.md").read_text()


def test_pickles_and_unsafe_torch_files_are_not_packed(system_files):
    run_dir = system_files
    (run_dir / "km.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(zoo.UnsafeWeightsError, match="km.pkl.*pickle"):
        zoo.pack(run_dir / "x.zip", {"kmeans": {"model_pickle": run_dir / "km.pkl"}})
    torch.save({"state_dict": {}, "payload": Payload()}, run_dir / "exp/codec/codec.pth")
    with pytest.raises(zoo.UnsafeWeightsError, match="codec.pth"):
        zoo.pack(run_dir / "x.zip", {"codec": {"codec": run_dir / "exp/codec/codec.pth"}})
    torch.save(Payload(), run_dir / "exp/cor/tokenizer/pytorch_model.bin")
    with pytest.raises(zoo.UnsafeWeightsError, match="pytorch_model.bin"):
        zoo.pack(run_dir / "x.zip", {"corrector": {"tokenizer": run_dir / "exp/cor/tokenizer"}})
    with pytest.raises(zoo.ArchiveError, match="invalid component name"):
        zoo.pack(run_dir / "x.zip", {"../evil": {"units": run_dir / "tokens.txt"}})
    assert not (run_dir / "x.zip").exists()


def test_zip_bomb_is_refused_before_extraction(archive, tmp_path):
    bomb = rebuild(archive, tmp_path / "bomb.zip", add_listed_member("separator/zeros.bin", bytes(4 * 1024**2)),
                   zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(bomb) as zf:
        info = zf.getinfo("separator/zeros.bin")
    assert info.compress_size * 200 < info.file_size  # deflated ~1000-fold
    with pytest.raises(zoo.ArchiveError, match="zeros.bin.*zip bomb"):
        zoo.unpack(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(zoo.ArchiveError, match="more than the limit of 3"):
        zoo.unpack(archive, tmp_path / "out", zoo.UnpackLimits(max_members=3))
    with pytest.raises(zoo.ArchiveError, match="expand to .* bytes"):
        zoo.unpack(archive, tmp_path / "out", zoo.UnpackLimits(max_total_bytes=100))
    assert not (tmp_path / "out").exists()
    assert zoo.unpack(bomb, tmp_path / "out", zoo.UnpackLimits(max_ratio=2000)).is_dir()


def test_directory_named_in_a_config_is_carried_file_by_file(run_dir, tmp_path):
    tokenizer = run_dir / "exp/cor/tokenizer"
    tokenizer.mkdir(parents=True)
    (tokenizer / "tokenizer.json").write_text("{}")
    (tokenizer / ".done").write_text("marker")  # recipe bookkeeping stays behind
    config = {"tokenizer_dir": "exp/cor/tokenizer", "model_conf": {"use_lora": False}}
    (run_dir / "exp/cor/config.yaml").write_text(yaml.safe_dump(config))
    corrector = {zoo.CONFIG_ROLE: run_dir / "exp/cor/config.yaml", zoo.MODEL_ROLE: run_dir / "exp/sep/model.pth"}
    archive = zoo.pack(run_dir / "cor.zip", {"corrector": corrector})
    root = zoo.unpack(archive, tmp_path / "unpacked")
    loaded = zoo.load_component_config(root, "corrector")
    assert loaded["tokenizer_dir"] == str(root / "corrector/tokenizer_dir")
    assert sorted(p.name for p in (root / "corrector/tokenizer_dir").iterdir()) == ["tokenizer.json"]


def system_components(run_dir, without=()):
    """Every component a full SepALM system packs (the separator's files stand in for the configs
    and weights of the others: packing does not look inside them)."""
    files = separator(run_dir)
    components = {
        "separator": files,
        "kmeans": {"centers": run_dir / "exp/kmeans/centers.npy", "kmeans": run_dir / "exp/kmeans/kmeans.yaml"},
        "corrector": files,
        "codec": {"codec": run_dir / "exp/codec/codec.pth"},
        "synthesizer": files,
        "aligner": files,
    }
    return {name: roles for name, roles in components.items() if name not in without}


def test_one_component_table_with_the_modes_that_run_each():
    names = [component.name for component in zoo.COMPONENTS]
    assert names == ["separator", "kmeans", "corrector", "codec", "synthesizer", "t2s", "aligner"]
    assert [c.name for c in zoo.mode_components("separator_only")] == ["separator"]
    assert [c.name for c in zoo.mode_components("no_aligner")] == names[:-1]
    assert [c.name for c in zoo.mode_components("sepalm")] == names
    assert [c.name for c in zoo.COMPONENTS if c.needed_if] == ["t2s"]  # only with a semantic synthesizer
    with pytest.raises(ValueError, match="mode 'fast'"):
        zoo.mode_components("fast")


def test_supported_modes_need_every_component_with_every_role():
    roles = {component.name: component.roles for component in zoo.COMPONENTS if component.needed_if is None}
    assert zoo.supported_modes(roles) == ("sepalm", "no_aligner", "separator_only")
    assert zoo.supported_modes({k: v for k, v in roles.items() if k != "aligner"}) == ("no_aligner", "separator_only")
    assert zoo.supported_modes({"separator": ("config", "model"), "tokens": ("units",)}) == ("separator_only",)
    assert zoo.supported_modes({**roles, "separator": ("config",)}) == ()
    assert zoo.supported_modes({"kmeans": ("centers", "kmeans")}) == ()


def test_a_full_system_shows_the_sepalm_usage_and_runs_every_mode(system_files, tmp_path):
    run_dir = system_files
    archive = zoo.pack(run_dir / "packed/sepalm.zip", system_components(run_dir))
    with zipfile.ZipFile(archive) as zf:
        card = zf.read("README.md").decode()
    assert 'SepALM.from_pretrained("sepalm.zip")' in card
    assert "Pipeline modes it runs: sepalm, no_aligner, separator_only." in card
    root = zoo.unpack(archive, tmp_path / "full")
    for mode in zoo.MODES:
        zoo.check_mode(root, mode)

    partial = zoo.pack(run_dir / "packed/no_ali.zip", system_components(run_dir, without=("aligner",)))
    root = zoo.unpack(partial, tmp_path / "no_ali")
    zoo.check_mode(root, "no_aligner")
    with pytest.raises(zoo.ArchiveError, match=r"mode 'sepalm' needs .*'aligner'.* runs modes \['no_aligner', 'separator_only'\]"):
        zoo.check_mode(root, "sepalm")
    with pytest.raises(ValueError, match="mode 'fast'"):
        zoo.check_mode(root, "fast")


def test_pack_refuses_a_known_component_without_a_role_its_loader_reads(run_dir):
    with pytest.raises(zoo.ArchiveError, match=r"component aligner: its loader reads roles \['config', 'model'\], missing \['model'\]"):
        zoo.pack(run_dir / "x.zip", {"aligner": {zoo.CONFIG_ROLE: run_dir / "exp/sep/config.yaml"}})
    assert not (run_dir / "x.zip").exists()
    # A name outside zoo.COMPONENTS packs whatever it is given.
    zoo.pack(run_dir / "y.zip", {"notes": {"readme": run_dir / "RESULTS.md"}})


def rename_component(old: str, new: str):
    """An edit renaming a component in meta.yaml (its members keep their names)."""
    def edit(members):
        meta = yaml.safe_load(members[zoo.META_NAME])
        meta["components"][new] = meta["components"].pop(old)
        members[zoo.META_NAME] = yaml.safe_dump(meta).encode()
    return edit


def test_loadable_files_need_every_role_the_loader_reads(run_dir, tmp_path):
    # An archive from elsewhere (pack refuses to make it): an aligner with a config only.
    packed = zoo.pack(run_dir / "x.zip", {"notes": {zoo.CONFIG_ROLE: run_dir / "exp/sep/config.yaml"}})
    archive = rebuild(packed, run_dir / "aligner_without_model.zip", rename_component("notes", "aligner"))
    root = zoo.unpack(archive, tmp_path / "unpacked")
    assert set(zoo.component_files(root, "aligner")) == {"config", "normalize_conf.stats_file"}
    with pytest.raises(zoo.ArchiveError, match=r"component 'aligner' lacks roles \['model'\]"):
        zoo.loadable_files(root, "aligner")


def test_resolve_pretrained_unpacks_an_archive_once_and_takes_a_directory_as_is(archive, tmp_path):
    root = zoo.resolve_pretrained(archive, tmp_path / "cache")
    assert root == tmp_path / "cache" / zoo.sha256_file(archive) and (root / zoo.META_NAME).is_file()
    assert zoo.resolve_pretrained(root) == root
    with pytest.raises(FileNotFoundError, match="missing.zip"):
        zoo.resolve_pretrained(tmp_path / "missing.zip")


def edit_meta(edit):
    """An archive edit applied to the parsed meta.yaml."""
    def apply(members):
        meta = yaml.safe_load(members[zoo.META_NAME])
        edit(meta)
        members[zoo.META_NAME] = yaml.safe_dump(meta).encode()
    return apply


@pytest.mark.parametrize("member, message", [
    ("../outside/other.yaml", "not a plain relative file path"),
    ("/etc/other.yaml", "not a plain relative file path"),
    ("separator/other.yaml", "names 'separator/other.yaml' as its config, which is not a listed, checksummed member"),
])
def test_a_component_file_must_be_a_listed_member(archive, tmp_path, member, message):
    def point_config(meta):
        meta["components"]["separator"]["config"] = member

    edited = rebuild(archive, tmp_path / "edited.zip", edit_meta(point_config))
    with pytest.raises(zoo.ArchiveError, match=message):
        zoo.unpack(edited, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    root = zoo.unpack(archive, tmp_path / "good")  # the same edit in an unpacked directory
    meta = yaml.safe_load((root / zoo.META_NAME).read_text())
    point_config(meta)
    (root / zoo.META_NAME).write_text(yaml.safe_dump(meta))
    with pytest.raises(zoo.ArchiveError, match=message):
        zoo.component_files(root, "separator")


def test_an_unpacked_archive_edited_after_unpacking_is_refused_before_use(archive, tmp_path, caplog):
    cache = tmp_path / "cache"
    root = zoo.resolve_pretrained(archive, cache)
    config = root / "separator/config.yaml"
    assert zoo.resolve_pretrained(archive, cache) == root == zoo.resolve_pretrained(root)
    os.utime(config, ns=(0, 0))  # touched, same content: hashed again, accepted, recorded
    with caplog.at_level("INFO", logger="sepalm_espnet.zoo"):
        assert zoo.resolve_pretrained(root) == root
    assert "verifying every checksum" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="sepalm_espnet.zoo"):
        zoo.resolve_pretrained(root)
    assert "verifying every checksum" not in caplog.text  # sizes and mtimes match the record
    config.write_text(config.read_text().replace("8000", "16000"))
    for reuse in (lambda: zoo.resolve_pretrained(archive, cache), lambda: zoo.resolve_pretrained(root)):
        with pytest.raises(zoo.ArchiveError, match="separator/config.yaml fails its SHA-256 check"):
            reuse()
    (root / "separator/extra.py").write_text("import os")
    with pytest.raises(zoo.ArchiveError, match="files not listed in meta.yaml: \\['separator/extra.py'\\]"):
        zoo.resolve_pretrained(root)


def test_many_small_members_that_expand_together_are_refused(archive, tmp_path):
    def add_zeros(members):
        for n in range(16):  # each below ratio_min_bytes (1 MiB), 16 MiB of zeros in all
            add_listed_member(f"separator/zeros{n}.bin", bytes(1024**2 - 1))(members)

    bomb = rebuild(archive, tmp_path / "bomb.zip", add_zeros, zipfile.ZIP_DEFLATED)
    with pytest.raises(zoo.ArchiveError, match="members expand .*-fold together.*zip bomb"):
        zoo.unpack(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_yaml_that_would_construct_objects_is_refused_naming_archive_and_member(archive, tmp_path):
    def python_tag(members):
        members[zoo.META_NAME] += b"evil: !!python/object/apply:os.system ['true']\n"

    edited = rebuild(archive, tmp_path / "edited.zip", python_tag)
    with pytest.raises(zoo.ArchiveError, match=r"edited.zip: meta.yaml: not safe, valid YAML"):
        zoo.unpack(edited, tmp_path / "out")
    root = zoo.unpack(archive, tmp_path / "good")
    config = root / "separator/config.yaml"
    config.write_text(config.read_text() + "evil: !!python/name:os.system\n")
    with pytest.raises(zoo.ArchiveError, match="separator/config.yaml: not safe, valid YAML"):
        zoo.load_component_config(root, "separator")


def test_pickles_and_object_arrays_are_refused_whatever_their_name(run_dir):
    import pickle

    (run_dir / "tokens.txt").write_bytes(pickle.dumps({"a": Payload()}))
    (run_dir / "old.txt").write_bytes(pickle.dumps([1, 2], protocol=0))
    np.save(run_dir / "centers.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(run_dir / "stats.npz", mean=np.zeros(3), names=np.array([None], dtype=object))
    for name in ("tokens.txt", "old.txt", "centers.npy", "stats.npz"):
        with pytest.raises(zoo.UnsafeWeightsError, match=name):
            zoo.pack(run_dir / "x.zip", {"extra": {"units": run_dir / name}})
    assert not (run_dir / "x.zip").exists()
    np.save(run_dir / "plain.npy", np.zeros((4, 2), dtype=np.float32))
    torch.save({"w": torch.zeros(2)}, run_dir / "legacy.bin", _use_new_zipfile_serialization=False)
    (run_dir / "words.txt").write_text("N.\nhello world\n")
    for name in ("plain.npy", "legacy.bin", "words.txt"):
        zoo.pack(run_dir / "ok.zip", {"extra": {"units": run_dir / name}})


def test_espnet_model_zoo_unpacks_our_archive_and_from_pretrained_takes_its_files(separator_archive, tmp_path):
    """pack -> espnet_model_zoo's unpack -> from_pretrained -> the same outputs as from the zip."""
    from espnet_model_zoo.downloader import ModelDownloader

    from sepalm_espnet.pipeline import SepALM, SeparatorModel

    files = ModelDownloader(cachedir=tmp_path / "espnet_cache").unpack_local_file(str(separator_archive))
    assert set(files) == set(zoo.read_meta(zoo.unpack(separator_archive, tmp_path / "ours"))["checksums"])
    mixture = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1
    reference = SeparatorModel.from_pretrained(separator_archive, cache_dir=tmp_path / "cache").separate(mixture, 16000)
    for model in (SeparatorModel.from_pretrained(files),
                  SepALM.from_pretrained(files, mode=zoo.SEPARATOR_ONLY)):
        outputs = model.separate(mixture, 16000)
        outputs = [getattr(o, "waveform", o) for o in outputs]
        assert all(np.array_equal(a, b) for a, b in zip(reference, outputs))
    member = next(name for name in files if name.endswith("config.yaml"))
    Path(files[member]).write_text(Path(files[member]).read_text() + "# edited\n")
    with pytest.raises(zoo.ArchiveError, match="config.yaml fails its SHA-256 check"):
        SeparatorModel.from_pretrained(files)
    with pytest.raises(zoo.ArchiveError, match="not that member of an unpacked archive"):
        zoo.resolve_pretrained({"separator/config.yaml": str(tmp_path / "elsewhere.yaml")})


def hub_snapshot(cache, repo_id, unpacked):
    """A Hugging Face hub cache entry as the hub client leaves it: blobs, links, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    for path in unpacked.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            blob = repo / "blobs" / zoo.sha256_file(path)
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(path.read_bytes())
            link = repo / "snapshots" / commit / path.relative_to(unpacked)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs/main").write_text(commit)
    return repo / "snapshots" / commit


def test_a_hub_repo_id_loads_offline_from_its_snapshot_and_through_espnet_model_zoo(separator_archive, tmp_path,
                                                                                   monkeypatch):
    from espnet_model_zoo.downloader import ModelDownloader
    from huggingface_hub import constants

    from sepalm_espnet.pipeline import SeparatorModel

    cache = tmp_path / "hub"
    snapshot = hub_snapshot(cache, "user/sepalm-mini", zoo.unpack(separator_archive, tmp_path / "ours"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    assert zoo.resolve_pretrained("user/sepalm-mini") == snapshot
    mixture = np.random.default_rng(1).standard_normal(4000).astype(np.float32) * 0.1
    reference = SeparatorModel.from_pretrained(separator_archive, cache_dir=tmp_path / "cache").separate(mixture, 16000)
    by_id = SeparatorModel.from_pretrained("user/sepalm-mini").separate(mixture, 16000)
    files = ModelDownloader(cachedir=cache).download_and_unpack("user/sepalm-mini")
    by_files = SeparatorModel.from_pretrained(files).separate(mixture, 16000)
    assert all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(reference, by_id, by_files))
    with pytest.raises(FileNotFoundError, match="user/not-there: .*Hugging Face hub has no snapshot"):
        zoo.resolve_pretrained("user/not-there")
