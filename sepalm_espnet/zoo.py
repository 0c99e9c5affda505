"""Model-zoo archives: a trained system in one zip that loads without the recipe that made it.

Layout (every member but meta.yaml is listed in meta.yaml's `checksums` with its SHA-256):

    meta.yaml                    format version, creation time, library versions, components,
                                 checksums; and ESPnet's `files` / `yaml_files` (below)
    README.md                    model card: components, usage, results
    RESULTS.md                   scores, when packed with them
    <component>/config.yaml      training config, with paths rewritten to stay inside the archive
    <component>/model.safetensors
    <component>/<config key>.<ext>   files the config refers to (e.g. feature stats), carried in
    <component>/<role><ext>      any other file of the component (centers.npy, codec.pth, ...)
    <component>/<role>/...       a directory role (e.g. a tokenizer), every file under it

`COMPONENTS` is the one table of what a SepALM system is made of: each component's name, the
roles its loader reads and the pipeline modes that run it. Packing uses it to tell which modes
an archive can run (its model card shows the matching usage), `SepALM.from_pretrained` and
`SeparatorModel.from_pretrained` to load what a mode needs and nothing else. Any other
component or role (e.g. token lists) is packed and unpacked as is.

ESPnet's model zoo reads the same archive: meta.yaml's `files` maps every member to itself and
`yaml_files` is empty (espnet_model_zoo rewrites the paths inside those, which would break their
checksums), so `espnet_model_zoo.downloader.ModelDownloader().unpack_local_file(zip)` and
`download_and_unpack("user/repo")` return {member: path}, which `resolve_pretrained` accepts
like an archive, a directory or a Hugging Face repo id; every check below runs on it whoever
unpacked or downloaded it.

Weights are stored as safetensors and read back without unpickling; a `.pth` is only ever read
with `torch.load(weights_only=True)` (tasks.loading.read_state_dict), and packing refuses torch
files that hold anything but tensors and plain containers, and pickles or object arrays (by
content, whatever the file is called). Unpacking refuses members that could escape the
destination (absolute paths, `..`, symlinks) or that meta.yaml does not list, a component file
that is not a listed member, archives too large or too compressed to be a model (zip bombs,
`UnpackLimits`, per member and in all), YAML that would construct objects, and checks every
checksum before anything is used. An unpacked directory (the cache, or one given as is) is
checked again before each use (`verify_before_use`): by sizes and mtimes when they match the
last full check, by every checksum otherwise.
"""
from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import logging
import os
import pickletools
import platform
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np
import safetensors.torch
import torch
import yaml

import sepalm_espnet
from sepalm_espnet.data.kaldi_dir import PathLike, atomic_path
from sepalm_espnet.tasks.loading import UnsafeWeightsError, read_state_dict

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: checksums under `checksums`, `files` as ESPnet reads it
META_NAME = "meta.yaml"
# Sizes and mtimes of an unpacked archive's files when they were last verified in full: a reuse
# whose files still match is checked without hashing again (not a member; never published).
UNPACKED_STAMP = ".unpacked.json"
SEPARATOR_COMPONENT = "separator"
KMEANS_COMPONENT = "kmeans"
CORRECTOR_COMPONENT = "corrector"
SYNTHESIZER_COMPONENT = "synthesizer"
CODEC_COMPONENT = "codec"
T2S_COMPONENT = "t2s"
ALIGNER_COMPONENT = "aligner"
CONFIG_ROLE = "config"
MODEL_ROLE = "model"
CENTERS_ROLE = "centers"  # packed as kmeans/centers.npy and kmeans/kmeans.yaml, the files load_kmeans reads
KMEANS_ROLE = "kmeans"
CODEC_ROLE = "codec"

# torch.save files: packed only if they load with weights_only=True. `.bin` is checked only when
# it is a torch file (CTranslate2's model.bin is not). Pickles are never packed.
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")

# Keys of an ESPnet training config whose paths only the training run reads or writes (data
# lists, shape files, output and init locations). Inference never needs them, so they are
# emptied rather than carried.
TRAINING_ONLY_PATH_KEYS = (
    "config",
    "output_dir",
    "train_data_path_and_name_and_type",
    "valid_data_path_and_name_and_type",
    "train_shape_file",
    "valid_shape_file",
    "init_param",
    "pretrain_path",
    "deepspeed_config",
    "rir_scp",
    "noise_scp",
    "utt2spk",
)

# Pipeline modes, paper Table 3: the full system, (g) the re-synthesized s* without the
# aligner, (d) the separator alone.
SEPALM, NO_ALIGNER, SEPARATOR_ONLY = "sepalm", "no_aligner", "separator_only"
MODES = (SEPALM, NO_ALIGNER, SEPARATOR_ONLY)
REFINING_MODES = (SEPALM, NO_ALIGNER)


@dataclass(frozen=True)
class Component:
    """One trained part of a SepALM system, as an archive holds it.

    `roles`: the files its loader reads (an archive may carry more). `modes`: the pipeline
    modes that run it. `needed_if`: a condition beyond the mode (the loader checks it), or None.
    """

    name: str
    roles: Tuple[str, ...]
    modes: Tuple[str, ...]
    description: str
    needed_if: Optional[str] = None


COMPONENTS = (
    Component(SEPARATOR_COMPONENT, (CONFIG_ROLE, MODEL_ROLE), MODES,
              "ESPnet enh model (SepFormer), or SLM-SS with its codec: mixture -> estimates ŝ"),
    Component(KMEANS_COMPONENT, (CENTERS_ROLE, KMEANS_ROLE), REFINING_MODES,
              "clusters of speech features: ŝ -> units"),
    Component(CORRECTOR_COMPONENT, (CONFIG_ROLE, MODEL_ROLE), REFINING_MODES,
              "audio LM: units -> preliminary and corrected transcripts"),
    Component(CODEC_COMPONENT, (CODEC_ROLE,), REFINING_MODES,
              "DAC: ŝ -> codec tokens, refined tokens -> s*"),
    Component(SYNTHESIZER_COMPONENT, (CONFIG_ROLE, MODEL_ROLE), REFINING_MODES,
              "codec LM (AR+NAR or masked): tokens of ŝ + corrected text -> tokens of s*"),
    Component(T2S_COMPONENT, (CONFIG_ROLE, MODEL_ROLE), REFINING_MODES,
              "phonemes -> semantic tokens, the masked synthesizer's condition",
              needed_if="the synthesizer is conditioned on semantic tokens"),
    Component(ALIGNER_COMPONENT, (CONFIG_ROLE, MODEL_ROLE), (SEPALM,),
              "ŝ + s* -> output s̃"),
)
COMPONENTS_BY_NAME = {component.name: component for component in COMPONENTS}


def missing_roles(component: str, roles: Iterable[str]) -> List[str]:
    """Roles the loader of a COMPONENTS entry reads that `roles` lacks (none for other names)."""
    known = COMPONENTS_BY_NAME.get(component)
    return [role for role in known.roles if role not in roles] if known else []


def mode_components(mode: str) -> Tuple[Component, ...]:
    """The components `mode` runs, in pipeline order (those with a `needed_if` included)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {MODES}")
    return tuple(component for component in COMPONENTS if mode in component.modes)


SEPALM_USAGE = """\
from sepalm_espnet.inference import SepALM

model = SepALM.from_pretrained("{archive}")  # mode="no_aligner" / "separator_only": the ablations
for speaker in model.separate("mixture.wav"):  # at the input's rate, with both transcripts
    print(speaker.corrected, speaker.waveform.shape)
"""
SEPARATOR_USAGE = """\
from sepalm_espnet.inference import SeparatorModel

model = SeparatorModel.from_pretrained("{archive}")
estimates = model.separate("mixture.wav")  # one float32 array per speaker, at the input's rate
"""
COMPONENTS_USAGE = """\
from sepalm_espnet import zoo

root = zoo.unpack("{archive}")  # verified against meta.yaml's checksums, cached
files = zoo.component_files(root, "{component}")  # {role: path}
"""


@dataclass(frozen=True)
class UnpackLimits:
    """What an archive may expand to before unpacking refuses it (a zip bomb guard).

    Deflate compresses at most ~1030:1; weights and configs compress far less, so a large member
    above `max_ratio` is refused as crafted.
    """

    max_total_bytes: int = 20 * 1024**3
    max_members: int = 10_000
    max_ratio: float = 200.0
    ratio_min_bytes: int = 1024**2  # small members (a YAML of zeros) may legitimately compress well


class ArchiveError(ValueError):
    """An archive (or the files to pack into one) is malformed, unsafe or tampered with."""


def sha256_file(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> Dict[str, str]:
    return {
        "sepalm_espnet": sepalm_espnet.__version__,
        "espnet": importlib.metadata.version("espnet"),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }


def _leaves(node: Any, key_path: Tuple[str, ...] = ()) -> Iterator[Tuple[Tuple[str, ...], Any]]:
    """(key path, value) for every scalar in nested dicts and lists."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, key_path + (str(key),))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, key_path + (str(index),))
    else:
        yield key_path, node


def _replace_leaves(node: Any, replacements: Mapping[str, str]) -> Any:
    """A copy of `node` with every string leaf found in `replacements` swapped for its value."""
    if isinstance(node, dict):
        return {key: _replace_leaves(value, replacements) for key, value in node.items()}
    if isinstance(node, list):
        return [_replace_leaves(value, replacements) for value in node]
    if isinstance(node, str):
        return replacements.get(node, node)
    return node


def portable_config(
    config: Dict[str, Any], component: str
) -> Tuple[Dict[str, Any], Dict[str, Tuple[str, Path]]]:
    """Rewrite a training config so no path in it points outside the archive.

    Training-only paths are emptied. Any other string naming an existing file (ESPnet writes
    paths relative to the recipe directory, i.e. the working directory) is carried into the
    archive as `<component>/<dotted key><suffix>` and the config is rewritten to that member
    name. Returns (config, {dotted key: (member name, source file)}).
    """
    config = {
        key: ([] if isinstance(value, list) else None) if key in TRAINING_ONLY_PATH_KEYS else value
        for key, value in config.items()
    }
    replacements: Dict[str, str] = {}
    carried: Dict[str, Tuple[str, Path]] = {}
    for key_path, value in _leaves(config):
        if not isinstance(value, str) or "/" not in value or value in replacements:
            continue
        dotted = ".".join(key_path)
        source = Path(value)
        if source.is_dir():  # e.g. the corrector's tokenizer_dir: carried file by file
            member = f"{component}/{dotted}"
            replacements[value] = member
            carried[dotted] = (member, source)
        elif source.is_file():
            member = f"{component}/{dotted}{source.suffix}"
            replacements[value] = member
            carried[dotted] = (member, source)
        elif source.is_absolute():
            raise ArchiveError(
                f"config key {dotted}: {value} points outside the archive and does not exist"
            )
    return _replace_leaves(config, replacements), carried


def model_card_text(meta: Mapping[str, Any], usage: str, results_md: Optional[str]) -> str:
    lines = [f"# {meta['name']}", "", "Packed with sepalm_espnet. Components:", ""]
    lines += ["| component | role | file |", "|---|---|---|"]
    for component, roles in meta["components"].items():
        lines += [f"| {component} | {role} | `{member}` |" for role, member in roles.items()]
    lines += [""] + [f"- {name}: {COMPONENTS_BY_NAME[name].description}"
                     for name in meta["components"] if name in COMPONENTS_BY_NAME]
    modes = supported_modes(meta["components"])
    if modes:
        lines += ["", f"Pipeline modes it runs: {', '.join(modes)}."]
    lines += ["", "## Usage", "", "```python", usage.rstrip(), "```", ""]
    if results_md:
        lines += ["## Results", "", results_md.strip(), ""]
    versions = ", ".join(f"{name} {version}" for name, version in meta["versions"].items())
    lines += ["## Provenance", "", f"Created {meta['created']} with {versions}.", ""]
    return "\n".join(lines)


def check_torch_file(path: PathLike) -> None:
    """Refuse a torch.save file holding anything torch.load(weights_only=True) would not load.

    Unlike `read_state_dict`, nested containers are fine: DAC's codec file is
    {'state_dict': ..., 'metadata': {'kwargs': ...}} (see synthesizer.codec.load_dac).
    """
    try:
        try:  # memory-mapped: a multi-GB checkpoint is checked without being read into memory
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            torch.load(path, map_location="cpu", weights_only=True)  # legacy (pre-zip) format
    except Exception as exc:  # pickle.UnpicklingError for objects; others for torch.package files
        raise UnsafeWeightsError(
            f"{path}: refusing to pack a torch file that does not load with weights_only=True "
            f"(it holds pickled objects, or is a torch.package archive): {exc}"
        ) from exc


def _is_torch_file(path: Path) -> bool:
    if path.suffix in TORCH_SUFFIXES:
        return True
    if path.suffix != ".bin":
        return False
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip (PK) or, in the legacy format, a pickle (protocol opcode 0x80).
    return head[:2] == b"PK" or head[:1] == b"\x80"


def _is_pickle(path: Path) -> bool:
    """Whether the file is a pickle stream, whatever its name: protocol 2+ starts with PROTO
    (0x80); an older protocol is recognised by parsing, for small files, up to its STOP."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return True
    if path.stat().st_size > 1024**2 or not head:
        return False
    try:
        with open(path, "rb") as f:
            *_, (last, _, _) = pickletools.genops(f)
            return last.name == "STOP" and not f.read(1)
    except Exception:  # not a pickle stream
        return False


def _check_packable_file(component: str, role: str, path: Path) -> None:
    """Refuse what would unpickle (or hold objects) when loaded, by content as well as by name."""
    if _is_torch_file(path):
        check_torch_file(path)
        return
    with open(path, "rb") as f:
        head = f.read(6)
    if path.suffix in PICKLE_SUFFIXES or _is_pickle(path):
        try:  # a legacy (pre-zip) torch.save file is a pickle that torch's safe loader reads
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            raise UnsafeWeightsError(
                f"component {component}: {role} file {path} is a pickle; loading it could run arbitrary "
                "code (convert it to arrays first, e.g. fit_kmeans --sklearn_model)"
            ) from None
        return
    if head == b"\x93NUMPY" or (path.suffix == ".npz" and head[:2] == b"PK"):
        try:
            loaded = np.load(path, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded:
                    for name in loaded.files:
                        loaded[name]
        except (ValueError, OSError) as exc:
            raise UnsafeWeightsError(
                f"component {component}: {role} file {path} holds object arrays (they load only by "
                f"unpickling) or is not a readable numpy file: {exc}"
            ) from exc


def _plain_name(what: str, name: str) -> None:
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ArchiveError(f"invalid {what} name {name!r}")


def _directory_members(component: str, role: str, directory: Path) -> Dict[str, Path]:
    """Every file under a directory role, as <component>/<role>/<relative path>; hidden files
    (the recipe's .done/.signature markers) stay behind."""
    members: Dict[str, Path] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_dir() or any(part.startswith(".") for part in path.relative_to(directory).parts):
            continue
        if not path.is_file():
            raise ArchiveError(f"component {component}: {path} is neither a file nor a directory")
        relative = path.relative_to(directory).as_posix()
        member = f"{component}/{role}/{relative}"
        _check_member_name(directory, member)
        _check_packable_file(component, role, path)
        members[member] = path
    if not members:
        raise ArchiveError(f"component {component}: {role} directory {directory} holds no files")
    return members


def supported_modes(components: Mapping[str, Iterable[str]]) -> Tuple[str, ...]:
    """The modes whose components (those needed in every system) are all there with every role.

    components: {name: roles}, of the files to pack or of meta.yaml.
    """
    def complete(needed: Component) -> bool:
        return needed.name in components and not missing_roles(needed.name, components[needed.name])

    return tuple(
        mode for mode in MODES
        if all(complete(needed) for needed in mode_components(mode) if needed.needed_if is None)
    )


def _default_usage(components: Mapping[str, Iterable[str]]) -> str:
    modes = supported_modes(components)
    if SEPALM in modes:
        return SEPALM_USAGE
    if SEPARATOR_ONLY in modes:
        return SEPARATOR_USAGE
    return COMPONENTS_USAGE.replace("{component}", next(iter(components)))


def pack(
    out_path: PathLike,
    components: Mapping[str, Mapping[str, PathLike]],
    results_md: Optional[PathLike] = None,
    extra: Optional[Mapping[str, Any]] = None,
    config_overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
    usage: Optional[str] = None,
    model_card: Optional[PathLike] = None,
) -> Path:
    """Write an archive atomically; return its path.

    components: {name: {role: path}}; a COMPONENTS name needs every role its loader reads, any
    other name packs whatever it is given. Role `config` (a YAML training config) is made portable,
    role `model` (.pth or .safetensors) is stored as safetensors, any other file role is copied
    as `<name>/<role><suffix>` and a directory role file by file under `<name>/<role>/`.
    config_overrides: {name: {key: value}} set in that config (e.g. the sample rate a run
    forgot to record). extra: free-form YAML-safe metadata for meta.yaml. `usage` is the
    generated model card's code snippet ("{archive}" in it becomes the archive's file name);
    `model_card` replaces the generated README.md.
    """
    out_path = Path(out_path)
    if not components:
        raise ArchiveError("nothing to pack: no components given")
    members: Dict[str, Union[bytes, Path]] = {}
    roles_by_component: Dict[str, Dict[str, str]] = {}
    for component, roles in components.items():
        _plain_name("component", component)
        if not roles:
            raise ArchiveError(f"component {component}: no files given")
        member_roles: Dict[str, str] = {}
        for role, source in roles.items():
            _plain_name(f"component {component}: role", role)
            source = Path(source)
            if source.is_dir() and role not in (CONFIG_ROLE, MODEL_ROLE):
                members.update(_directory_members(component, role, source))
                member_roles[role] = f"{component}/{role}"
                continue
            if not source.is_file():
                raise ArchiveError(f"component {component}: {role} file {source} not found")
            if role == CONFIG_ROLE:
                with open(source, encoding="utf-8") as f:
                    config = yaml.safe_load(f)
                if not isinstance(config, dict):
                    raise ArchiveError(f"component {component}: {source} is not a YAML mapping")
                config, carried = portable_config(config, component)
                config.update((config_overrides or {}).get(component, {}))
                member = f"{component}/config.yaml"
                members[member] = yaml.safe_dump(config, sort_keys=False, allow_unicode=True).encode()
                for carried_role, (carried_member, carried_source) in carried.items():
                    if carried_source.is_dir():
                        members.update(_directory_members(component, carried_role, carried_source))
                    else:
                        _check_packable_file(component, carried_role, carried_source)
                        members[carried_member] = carried_source
                    member_roles[carried_role] = carried_member
            elif role == MODEL_ROLE:
                state_dict = {name: tensor.contiguous() for name, tensor in read_state_dict(source).items()}
                member = f"{component}/model.safetensors"
                members[member] = safetensors.torch.save(state_dict)
            else:
                _check_packable_file(component, role, source)
                member = f"{component}/{role}{source.suffix}"
                members[member] = source
            if member in member_roles.values():
                raise ArchiveError(f"component {component}: two roles would both be stored as {member}")
            member_roles[role] = member
        missing = missing_roles(component, member_roles)
        if missing:
            # Refused here, not when someone loads the published archive.
            raise ArchiveError(f"component {component}: its loader reads roles "
                               f"{list(COMPONENTS_BY_NAME[component].roles)}, missing {missing} (given: {sorted(member_roles)})")
        roles_by_component[component] = member_roles
    if results_md is not None:
        members["RESULTS.md"] = Path(results_md).read_bytes()

    meta: Dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "name": out_path.stem,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "components": roles_by_component,
    }
    if model_card is not None:
        members["README.md"] = Path(model_card).read_bytes()
    else:
        card_results = members["RESULTS.md"].decode("utf-8") if "RESULTS.md" in members else None
        snippet = (usage or _default_usage(components)).replace("{archive}", out_path.name)
        members["README.md"] = model_card_text(meta, snippet, card_results).encode()
    meta["extra"] = dict(extra or {})
    meta["checksums"] = {
        name: hashlib.sha256(data).hexdigest() if isinstance(data, bytes) else sha256_file(data)
        for name, data in sorted(members.items())
    }
    meta["files"] = {name: name for name in sorted(members)}  # espnet_model_zoo's {key: member}
    meta["yaml_files"] = {}

    with atomic_path(out_path, suffix=".zip") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(META_NAME, yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
            for name, data in sorted(members.items()):
                if isinstance(data, bytes):
                    archive.writestr(name, data)
                else:
                    archive.write(data, name)
    return out_path


def _check_member_name(archive: Union[Path, str], name: str) -> None:
    """Only plain relative file paths: nothing that could land outside the destination."""
    if (
        not isinstance(name, str)
        or name.startswith("/")
        or "\\" in name
        or name[1:2] == ":"
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise ArchiveError(f"{archive}: refusing member {name!r}: not a plain relative file path")


def _check_sizes(archive: Path, zf: zipfile.ZipFile, limits: UnpackLimits) -> None:
    """Refuse a zip bomb from its member table alone, before anything is decompressed."""
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise ArchiveError(f"{archive}: {len(infos)} members, more than the limit of {limits.max_members}")
    total = sum(info.file_size for info in infos)
    if total > limits.max_total_bytes:
        raise ArchiveError(
            f"{archive}: members expand to {total} bytes, more than the limit of {limits.max_total_bytes}"
        )
    for info in infos:
        if info.file_size >= limits.ratio_min_bytes and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise ArchiveError(
                f"{archive}: member {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f}-fold "
                f"({info.compress_size} -> {info.file_size} bytes), more than the limit of {limits.max_ratio:.0f}: "
                "refusing a likely zip bomb"
            )
    # Many members each below ratio_min_bytes escape the check above: the archive as a whole
    # is held to the same ratio.
    compressed = sum(info.compress_size for info in infos)
    if total >= limits.ratio_min_bytes and total > limits.max_ratio * max(compressed, 1):
        raise ArchiveError(
            f"{archive}: its {len(infos)} members expand {total / max(compressed, 1):.0f}-fold together "
            f"({compressed} -> {total} bytes), more than the limit of {limits.max_ratio:.0f}: refusing a likely zip bomb"
        )


def _read_meta_bytes(archive: Path, zf: zipfile.ZipFile, limits: UnpackLimits = UnpackLimits()) -> bytes:
    """Validate the member table against meta.yaml (nothing extracted yet); return meta.yaml."""
    _check_sizes(archive, zf, limits)
    names = [info.filename for info in zf.infolist()]
    for info in zf.infolist():
        _check_member_name(archive, info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ArchiveError(f"{archive}: refusing member {info.filename!r}: it is a symlink")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ArchiveError(f"{archive}: members stored more than once: {duplicates}")
    if META_NAME not in names:
        raise ArchiveError(f"{archive}: no {META_NAME}; not a sepalm_espnet archive")
    meta_bytes = zf.read(META_NAME)
    meta = parse_meta(meta_bytes, f"{archive}: {META_NAME}")
    unlisted = sorted(set(names) - set(meta["checksums"]) - {META_NAME})
    if unlisted:
        raise ArchiveError(f"{archive}: members not listed in {META_NAME}: {unlisted}")
    missing = sorted(set(meta["checksums"]) - set(names))
    if missing:
        raise ArchiveError(f"{archive}: members listed in {META_NAME} but absent: {missing}")
    return meta_bytes


def _yaml_mapping(data: Union[bytes, str], where: str) -> Dict[str, Any]:
    """A YAML mapping read safely; a syntax error or a python/... tag names `where`."""
    try:
        loaded = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise ArchiveError(f"{where}: not safe, valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ArchiveError(f"{where}: not a YAML mapping")
    return loaded


def parse_meta(data: Union[bytes, str], where: str) -> Dict[str, Any]:
    """meta.yaml checked: its format version, plain member names, and every file a component
    names is a listed (so checksummed) member, or a directory of them."""
    meta = _yaml_mapping(data, where)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArchiveError(
            f"{where}: format version {meta.get('format_version')} is not {FORMAT_VERSION}; "
            "use the sepalm_espnet version that packed it"
        )
    if not isinstance(meta.get("checksums"), dict):
        raise ArchiveError(f"{where} has no checksums")
    listed = set(meta["checksums"])
    for name in listed:
        _check_member_name(where, name)
    if meta.get("files") != {name: name for name in sorted(listed)} or meta.get("yaml_files") != {}:
        raise ArchiveError(f"{where}: `files` must list every member as itself and `yaml_files` be empty "
                           "(what espnet_model_zoo reads; it would rewrite a yaml_files member)")
    components = meta.get("components")
    if not isinstance(components, dict) or not all(isinstance(roles, dict) for roles in components.values()):
        raise ArchiveError(f"{where}: `components` must map each component to its {{role: member}}")
    for component, roles in components.items():
        for role, member in roles.items():
            _check_member_name(where, member)
            if member not in listed and not any(name.startswith(f"{member}/") for name in listed):
                raise ArchiveError(
                    f"{where}: component {component} names {member!r} as its {role}, "
                    "which is not a listed, checksummed member"
                )
    return meta


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "sepalm_espnet"


def cached_unpack_dir(archive: PathLike, cache_dir: Optional[PathLike] = None) -> Path:
    """Where `unpack` puts an archive by default: <cache>/<archive SHA-256>."""
    return Path(cache_dir or default_cache_dir()) / sha256_file(archive)


def unpack(archive: PathLike, dest_dir: Optional[PathLike] = None, limits: Optional[UnpackLimits] = None) -> Path:
    """Verify and extract `archive`; return the directory holding its members.

    Default destination: `cached_unpack_dir(archive)`. A destination already holding this
    archive (same meta.yaml) is reused as is; one holding something else is an error.
    Extraction goes to a temporary directory that is renamed into place when complete.
    `limits` (default `UnpackLimits()`) bound what the archive may expand to.
    """
    limits = limits or UnpackLimits()
    archive = Path(archive)
    dest = Path(dest_dir) if dest_dir is not None else cached_unpack_dir(archive)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"{archive}: not a readable zip archive ({exc})") from exc
    with zf:
        meta_bytes = _read_meta_bytes(archive, zf, limits)
        declared_sizes = {info.filename: info.file_size for info in zf.infolist()}
        if _holds(dest, meta_bytes, archive):
            verify_before_use(dest)
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
        try:
            for name, expected in yaml.safe_load(meta_bytes)["checksums"].items():
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                written = 0
                with zf.open(name) as source, open(target, "wb") as sink:
                    for block in iter(lambda: source.read(1 << 20), b""):
                        written += len(block)
                        if written > declared_sizes[name]:  # never trust the table alone
                            raise ArchiveError(f"{archive}: member {name} is larger than its declared size")
                        digest.update(block)
                        sink.write(block)
                if digest.hexdigest() != expected:
                    raise ArchiveError(
                        f"{archive}: member {name} fails its SHA-256 check (corrupt or tampered)"
                    )
            (staging / META_NAME).write_bytes(meta_bytes)
            _write_stamp(staging)
            try:
                staging.rename(dest)
            except OSError:
                # Another process finished the same unpacking first.
                if not _holds(dest, meta_bytes, archive):
                    raise
                verify_before_use(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def _holds(dest: Path, meta_bytes: bytes, archive: Path) -> bool:
    """Whether `dest` already holds this archive; refuses a destination holding anything else."""
    if not dest.exists() or (dest.is_dir() and not any(dest.iterdir())):
        return False
    meta_path = dest / META_NAME
    if meta_path.is_file() and meta_path.read_bytes() == meta_bytes:
        return True
    raise ArchiveError(f"{dest} exists and does not hold {archive}; remove it or unpack elsewhere")


def read_meta(root: PathLike) -> Dict[str, Any]:
    path = Path(root) / META_NAME
    return parse_meta(path.read_bytes(), str(path))


PretrainedSource = Union[PathLike, Mapping[str, PathLike]]
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


def root_of_files(files: Mapping[str, PathLike]) -> Path:
    """The directory an espnet_model_zoo files dict ({member: path}) was unpacked into."""
    roots = set()
    for member, path in files.items():
        _check_member_name("the files dict", member)
        path = Path(path)
        if path.parts[-len(Path(member).parts):] != Path(member).parts:
            raise ArchiveError(f"files dict: {member} -> {path} is not that member of an unpacked archive")
        roots.add(Path(*path.parts[: -len(Path(member).parts)]))
    if len(roots) != 1 or not (next(iter(roots)) / META_NAME).is_file():
        raise ArchiveError(f"files dict: its paths do not share one unpacked archive with {META_NAME}: {sorted(roots)}")
    return roots.pop()


def resolve_pretrained(src: PretrainedSource, cache_dir: Optional[PathLike] = None) -> Path:
    """The unpacked directory of: an archive (verified and unpacked once into the cache), an
    unpacked archive or experiment directory (used in place), a files dict of espnet_model_zoo,
    or a Hugging Face repo id (a snapshot through the hub client, which honours HF_HUB_OFFLINE).
    An unpacked archive is checked by `verify_before_use` whoever unpacked it."""
    if isinstance(src, Mapping):
        root = root_of_files(src)
    elif Path(src).is_file():
        return unpack(src, cached_unpack_dir(src, cache_dir))
    elif Path(src).is_dir():
        root = Path(src)
    elif HUB_ID.fullmatch(str(src)):
        import huggingface_hub

        try:
            root = Path(huggingface_hub.snapshot_download(str(src)))
        except Exception as exc:  # offline without a cached snapshot, unknown repo, ...
            raise FileNotFoundError(f"{src}: not a local archive or directory, and the Hugging Face hub "
                                    f"has no snapshot of it here ({exc})") from exc
    else:
        raise FileNotFoundError(f"{src}: no such archive or directory")
    if (root / META_NAME).is_file():
        verify_before_use(root)
    return root


def component_files(root: PathLike, component: str) -> Dict[str, Path]:
    """{role: path} of one component of an unpacked archive."""
    root = Path(root)
    components = read_meta(root)["components"]
    if component not in components:
        raise ArchiveError(f"{root}: no component '{component}' (has: {sorted(components)})")
    return {role: root / member for role, member in components[component].items()}


def loadable_files(root: PathLike, component: str) -> Dict[str, Path]:
    """`component_files` of a COMPONENTS entry, refused unless every role its loader reads is there."""
    files = component_files(root, component)
    missing = missing_roles(component, files)
    if missing:
        raise ArchiveError(f"{root}: component '{component}' lacks roles {missing} (has: {sorted(files)})")
    return files


def check_mode(root: PathLike, mode: str) -> None:
    """Refuse, naming what is missing, an archive without what `mode` needs in every system."""
    needed = [component.name for component in mode_components(mode) if component.needed_if is None]
    components = read_meta(root)["components"]
    supported = supported_modes(components)
    if mode not in supported:
        raise ArchiveError(
            f"{root}: mode '{mode}' needs components {needed} with their roles; "
            f"the archive holds {dict((name, sorted(roles)) for name, roles in components.items())} "
            f"and runs modes {list(supported)}"
        )


def load_component_config(root: PathLike, component: str) -> Dict[str, Any]:
    """A component's config with carried-file member names turned into paths under `root`."""
    root = Path(root)
    files = component_files(root, component)
    config = _yaml_mapping(files[CONFIG_ROLE].read_bytes(), str(files[CONFIG_ROLE]))
    members = {str(path.relative_to(root)): str(path) for path in files.values()}
    return _replace_leaves(config, members)


ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


def _unpacker_artifact(root: Path, name: str) -> bool:
    """What other unpackers leave beside the members, never read by us: hidden files and dirs
    (our stamp; the hub client's .cache/; espnet_model_zoo's .lock and .done), and
    espnet_model_zoo's meta.yaml.lock and link to the archive it unpacked."""
    parts = name.split("/")
    if any(part.startswith(".") for part in parts) or name == f"{META_NAME}.lock":
        return True
    return len(parts) == 1 and (root / name).is_symlink() and name.endswith(ARCHIVE_SUFFIXES)


def _plain_or_hub_blob(root: Path, path: Path) -> bool:
    """A member is a plain file, or (a Hugging Face hub snapshot) a link into its repo's blobs."""
    if not path.is_symlink():
        return path.is_file()
    blobs = (root.parent.parent / "blobs").resolve()
    return root.parent.name == "snapshots" and path.resolve().parent == blobs and path.resolve().is_file()


def verify_unpacked(root: PathLike) -> Dict[str, int]:
    """{member: size} of an unpacked archive, meta.yaml included, after checking every checksum.

    A file that meta.yaml does not list is an error too (but for `_unpacker_artifact`s): what
    gets published (upload_hf) is exactly what was packed.
    """
    root = Path(root)
    if not (root / META_NAME).is_file():
        raise ArchiveError(f"{root}: no {META_NAME}; not an unpacked sepalm_espnet archive")
    listed = read_meta(root)["checksums"]
    present = {path.relative_to(root).as_posix() for path in root.rglob("*") if not path.is_dir()}
    unlisted = sorted(name for name in present - set(listed) - {META_NAME} if not _unpacker_artifact(root, name))
    if unlisted:
        raise ArchiveError(f"{root}: files not listed in {META_NAME}: {unlisted[:5]}")
    sizes = {META_NAME: (root / META_NAME).stat().st_size}
    for name, expected in sorted(listed.items()):
        _check_member_name(root, name)
        path = root / name
        if not _plain_or_hub_blob(root, path):
            raise ArchiveError(f"{root}: member {name} is missing or not a plain file")
        if sha256_file(path) != expected:
            raise ArchiveError(f"{root}: member {name} fails its SHA-256 check (modified since unpacking)")
        sizes[name] = path.stat().st_size
    return dict(sorted(sizes.items()))


def _file_states(root: Path) -> Dict[str, List[int]]:
    """{file: [size, mtime_ns]} of every file under root but the unpackers' artifacts (a link
    followed: a hub snapshot's blob)."""
    states = {}
    for path in root.rglob("*"):
        name = path.relative_to(root).as_posix()
        if not path.is_dir() and not _unpacker_artifact(root, name):
            stat_result = path.stat() if path.exists() else path.lstat()
            states[name] = [stat_result.st_size, stat_result.st_mtime_ns]
    return dict(sorted(states.items()))


def _write_stamp(root: Path) -> None:
    states = _file_states(root)  # before the stamp's temporary file exists
    with atomic_path(root / UNPACKED_STAMP) as tmp:
        tmp.write_text(json.dumps(states))


def verify_before_use(root: PathLike) -> None:
    """An unpacked archive (a cache entry or a directory given as is) is what meta.yaml lists:
    cheaply, when every file still has the size and mtime recorded at its last full check;
    otherwise every checksum again (verify_unpacked), which refuses a modified member by name."""
    root = Path(root)
    try:
        recorded = json.loads((root / UNPACKED_STAMP).read_text())
    except (OSError, ValueError):
        recorded = None
    if recorded is not None and recorded == _file_states(root):
        return
    logger.info("%s: verifying every checksum (files changed since the last check, or never checked)", root)
    verify_unpacked(root)
    try:
        _write_stamp(root)
    except OSError as exc:  # a read-only directory is verified in full at every use
        logger.info("%s: cannot record the check (%s)", root, exc)
