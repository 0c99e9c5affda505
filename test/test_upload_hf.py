"""Stage 16 dry run: the exact files and sizes of a verified archive, and no network at all."""
import socket

import numpy as np
import pytest

from sepalm_espnet import zoo
from sepalm_espnet.bin import upload_hf


@pytest.fixture
def archive(tmp_path):
    np.save(tmp_path / "centers.npy", np.zeros((4, 3), dtype=np.float32))
    (tmp_path / "kmeans.yaml").write_text("n_clusters: 4\n")
    return zoo.pack(tmp_path / "packed/km.zip", {"kmeans": {"centers": tmp_path / "centers.npy", "kmeans": tmp_path / "kmeans.yaml"}})


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the dry run opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_dry_run_lists_every_member_with_its_size(archive, tmp_path, capsys, no_network):
    upload_hf.main(["--src", str(archive), "--repo_id", "someone/sepalm-mini", "--dry_run",
                    "--cache_dir", str(tmp_path / "cache")])
    lines = capsys.readouterr().out.splitlines()
    root = zoo.cached_unpack_dir(archive, tmp_path / "cache")
    assert lines[0] == "repo_id: someone/sepalm-mini (model, public)"
    assert lines[1] == f"from: {root}"
    names = ["README.md", "kmeans/centers.npy", "kmeans/kmeans.yaml", "meta.yaml"]
    assert lines[2:-1] == [f"{(root / name).stat().st_size}\t{name}" for name in names]
    total = sum((root / name).stat().st_size for name in names)
    assert lines[-1] == f"total: 4 files, {total} bytes"


def test_dry_run_refuses_modified_dirs_and_bad_repo_ids(archive, tmp_path, no_network):
    root = zoo.unpack(archive, tmp_path / "unpacked")
    with pytest.raises(SystemExit, match="Repo id"):
        upload_hf.main(["--src", str(root), "--repo_id", "not a repo", "--dry_run"])
    (root / "notes.txt").write_text("private notes")
    with pytest.raises(SystemExit, match="not listed.*notes.txt"):
        upload_hf.main(["--src", str(root), "--repo_id", "someone/x", "--dry_run"])
    (root / "notes.txt").unlink()
    (root / "kmeans/kmeans.yaml").write_text("n_clusters: 5\n")
    with pytest.raises(SystemExit, match="kmeans.yaml fails its SHA-256"):
        upload_hf.main(["--src", str(root), "--repo_id", "someone/x", "--dry_run"])
