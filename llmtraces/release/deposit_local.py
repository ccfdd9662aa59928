"""The local side of a deposit: which files of a release folder (or the one file of a
``.tar.zst`` bundle) go up, with size and md5; Zenodo's limits checked before any request;
the metadata from ``.zenodo.json``; and the ``.deposit-state.json`` that lets a rerun resume
the same draft.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from ..atomic import atomic_path
from ..errors import LLMTracesError
from ..fetching.checksums import compute
from ..registry import name_problem

#: Zenodo's limits for one record (help.zenodo.org; raised only on request).
MAX_FILES = 100
MAX_BYTES = 50 * 10**9
STATE_NAME = ".deposit-state.json"
BUNDLE_SUFFIX = ".tar.zst"
#: The Zenodo ``metadata`` object ``release build`` writes (``zenodo.json`` also read).
METADATA_NAMES = (".zenodo.json", "zenodo.json")
#: Fields Zenodo's deposit API requires (``publication_date`` defaults to the publish day).
REQUIRED = ("upload_type", "title", "creators", "description")
STATE_VERSION = 1


class DepositInputError(LLMTracesError):
    """A release folder that cannot be deposited as it is (limits, metadata, sums)."""


@dataclass(frozen=True)
class LocalFile:
    """One file of the release folder: its key on Zenodo, size and md5 hex digest."""

    key: str
    path: Path
    size: int
    md5: str


def file_md5(path: Path) -> str:
    """The md5 hex digest of ``path``, read in chunks (the fetch stack's checksums)."""
    return compute(path, ("md5",))["md5"]


def read_md5sums(folder: Path) -> dict[str, str]:
    """``MD5SUMS`` (coreutils format) as file name -> md5; empty when the folder has none."""
    sums = folder / "MD5SUMS"
    if not sums.is_file():
        return {}
    found: dict[str, str] = {}
    for n, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition(" ")
        name = name[1:] if name[:1] in (" ", "*") else name
        if not sep or len(digest) != 32 or any(c not in "0123456789abcdef" for c in digest) \
                or not name:
            raise DepositInputError(f"{sums}:{n}: expected '<md5 hex>  <file name>', got "
                                    f"{line[:80]!r}")
        found[name] = digest
    return found


def scan(folder: Path) -> list[LocalFile]:
    """The files to upload, by name: every plain file of ``folder`` but dotfiles (the state
    file, ``.zenodo.json``, temporary files) unless ``MD5SUMS`` lists them; md5 from
    ``MD5SUMS`` where listed, else computed. A subfolder or a listed file that is missing
    fails: Zenodo records have no folders, and nothing is silently left out."""
    if not folder.is_dir():
        raise DepositInputError(f"{folder}: expected a release folder (llmtraces release "
                                "build -o DIR writes DIR/llmtraces-traces-X.Y.Z)")
    listed = read_md5sums(folder)
    files = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") and entry.name not in listed:
            continue
        if entry.is_dir():
            raise DepositInputError(f"{entry}: Zenodo records hold no folders; pack it "
                                    "(llmtraces release build --layout bundle) or remove it")
        if not entry.is_file():
            raise DepositInputError(f"{entry}: not a plain file")
        why = name_problem(entry.name)
        if why:
            raise DepositInputError(f"{entry}: the name {why}")
        files.append(LocalFile(entry.name, entry, entry.stat().st_size,
                               listed.get(entry.name) or file_md5(entry)))
    missing = sorted(set(listed) - {f.key for f in files})
    if missing:
        raise DepositInputError(f"{folder / 'MD5SUMS'} lists {', '.join(missing[:5])}, which "
                                "the folder does not have: run llmtraces release verify")
    if not files:
        raise DepositInputError(f"{folder}: no files to deposit")
    return files


def check_limits(folder: Path, files: list[LocalFile]) -> None:
    """Refuse, before any request, a folder over Zenodo's 100 files or 50 GB per record."""
    if len(files) > MAX_FILES:
        raise DepositInputError(
            f"{folder} has {len(files)} files; a Zenodo record takes at most {MAX_FILES}: "
            "rebuild it as one archive with llmtraces release build --layout bundle and "
            "deposit the .tar.zst")
    total = sum(f.size for f in files)
    if total > MAX_BYTES:
        raise DepositInputError(
            f"{folder} holds {total:,} bytes; a Zenodo record takes at most {MAX_BYTES:,} "
            "(50 GB): split the release (--sources) or ask Zenodo support for a larger quota")


def is_bundle(target: Path) -> bool:
    """Whether ``target`` is a release bundle (``--layout bundle``) rather than a folder."""
    return target.is_file() and target.name.endswith(BUNDLE_SUFFIX)


def scan_bundle(bundle: Path) -> list[LocalFile]:
    """A bundle deposits as its one file."""
    return [LocalFile(bundle.name, bundle, bundle.stat().st_size, file_md5(bundle))]


def bundle_metadata_text(bundle: Path) -> str:
    """The ``<release>/.zenodo.json`` member of a bundle, read by streaming the tar (it sorts
    near the start; nothing is extracted to disk)."""
    try:
        with bundle.open("rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as raw, \
                tarfile.open(fileobj=raw, mode="r|") as tar:
            for member in tar:
                if member.isfile() and member.name.count("/") == 1 and \
                        member.name.split("/")[1] in METADATA_NAMES:
                    data = tar.extractfile(member)
                    if data is not None:
                        return data.read().decode("utf-8")
    except (OSError, tarfile.TarError, zstandard.ZstdError, UnicodeDecodeError) as exc:
        raise DepositInputError(f"{bundle}: not a readable {BUNDLE_SUFFIX} bundle: "
                                f"{exc}") from None
    raise DepositInputError(f"{bundle}: holds no <release>/.zenodo.json (the Zenodo "
                            "metadata that llmtraces release build writes)")


def load_metadata(target: Path) -> tuple[str, dict[str, Any]]:
    """The Zenodo ``metadata`` object of the release (``.zenodo.json``, else ``zenodo.json``;
    a ``{"metadata": {...}}`` wrapper is unwrapped), with Zenodo's required fields checked,
    and where it was read."""
    if is_bundle(target):
        path, text = f"{target}:.zenodo.json", bundle_metadata_text(target)
    else:
        found = next((target / n for n in METADATA_NAMES if (target / n).is_file()), None)
        if found is None:
            raise DepositInputError(f"{target}: no .zenodo.json (the Zenodo metadata that "
                                    "llmtraces release build writes)")
        path = str(found)
        try:
            text = found.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DepositInputError(f"{found}: not UTF-8 text: {exc}") from None
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise DepositInputError(f"{path}: not JSON: {exc}") from None
    if isinstance(meta, dict) and set(meta) == {"metadata"}:
        meta = meta["metadata"]
    if not isinstance(meta, dict):
        raise DepositInputError(f"{path}: expected a JSON object of Zenodo metadata")
    for field in REQUIRED:
        if not meta.get(field):
            raise DepositInputError(f"{path}: {field} is missing or empty (Zenodo requires "
                                    f"{', '.join(REQUIRED)})")
    creators = meta["creators"]
    if not isinstance(creators, list) or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str) and c["name"]
            for c in creators):
        raise DepositInputError(f"{path}: creators: expected a list of objects with a "
                                "'name' (\"Family, Given\")")
    if "doi" in meta:
        raise DepositInputError(f"{path}: doi is set; Zenodo mints the DOI at publication "
                                "(a sent DOI is taken as an external one)")
    return path, meta


def state_path(target: Path) -> Path:
    """Where a deposit of ``target`` keeps its state: ``DIR/.deposit-state.json`` for a
    folder, ``.<bundle name>.deposit-state.json`` beside a bundle."""
    if is_bundle(target):
        return target.with_name(f".{target.name}{STATE_NAME}")
    return target / STATE_NAME


def load_state(path: Path) -> dict[str, Any] | None:
    """The state file a previous run left at ``path``, or None."""
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DepositInputError(f"{path}: not JSON ({exc}); delete it to start a new "
                                "draft") from None
    ok = isinstance(state, dict) and state.get("state_version") == STATE_VERSION and \
        isinstance(state.get("deposition_id"), int) and isinstance(state.get("files"), dict)
    if not ok:
        raise DepositInputError(f"{path}: expected state_version {STATE_VERSION} with a "
                                "deposition_id and files; delete it to start a new draft")
    return state


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the state file atomically (ids, URLs, md5s: never the token)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
