"""Stage 16: publish a packed archive (or its unpacked directory) as a Hugging Face model repo.

    python -m sepalm_espnet.bin.upload_hf --src exp/packed/sepalm.zip --repo_id user/sepalm-libri2mix --dry_run
The archive's members are uploaded as files (README.md, the model card, is the repo's front
page), after every checksum is verified; nothing that meta.yaml does not list is uploaded.
--dry_run prints the repo id, each file and its size in bytes, and touches no network. A real
upload uses huggingface_hub's own login (HF_TOKEN or `hf auth login`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from sepalm_espnet import zoo
from sepalm_espnet.utils.cli import str2bool


def upload_plan(src: str, cache_dir: Optional[str] = None) -> Tuple[Path, Dict[str, int]]:
    """(directory to upload, {file: bytes}) for an archive (unpacked into the cache) or a directory."""
    path = Path(src)
    root = path if path.is_dir() else zoo.unpack(path, zoo.cached_unpack_dir(path, cache_dir))
    return root, zoo.verify_unpacked(root)


def format_plan(repo_id: str, private: bool, root: Path, sizes: Dict[str, int]) -> str:
    visibility = "private" if private else "public"
    lines = [f"repo_id: {repo_id} (model, {visibility})", f"from: {root}"]
    lines += [f"{size}\t{name}" for name, size in sizes.items()]
    lines.append(f"total: {len(sizes)} files, {sum(sizes.values())} bytes")
    return "\n".join(lines)


def upload(repo_id: str, root: Path, files: Sequence[str], private: bool, commit_message: str) -> str:
    from huggingface_hub import HfApi  # only a real upload needs the client

    api = HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=root, repo_type="model",
                             allow_patterns=list(files), commit_message=commit_message)
    return str(info)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="packed archive (.zip) or its unpacked directory")
    parser.add_argument("--repo_id", required=True, help="OWNER/NAME of the model repo (created if absent)")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--commit_message", default="Upload sepalm_espnet model")
    parser.add_argument("--cache_dir", default=None, help="where an archive is unpacked (default: the zoo cache)")
    parser.add_argument("--dry_run", type=str2bool, nargs="?", const=True, default=False,
                        help="print what would be uploaded; no network")
    args = parser.parse_args(argv)
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(args.repo_id)
        root, sizes = upload_plan(args.src, args.cache_dir)
        print(format_plan(args.repo_id, args.private, root, sizes))
        if not args.dry_run:
            print(upload(args.repo_id, root, list(sizes), args.private, args.commit_message))
    except (ValueError, OSError) as exc:
        sys.exit(f"upload_hf: {exc}")


if __name__ == "__main__":
    main()
