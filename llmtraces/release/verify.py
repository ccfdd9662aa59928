"""``llmtraces release verify``: a release folder (or bundle) checked file by file: sizes and
hashes against SHA256SUMS, MD5SUMS and MANIFEST.json, no unlisted file, every Parquet file's
embedded licence redistributable, MANIFEST.json and datapackage.json valid against their
JSON Schemas, and row counts. Every failing file is named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pyarrow.parquet as pq
from pydantic import ValidationError

from ..errors import InvalidTraceError
from ..formats.parquet import read_metadata
from ..licensing import NO_REDISTRIBUTION, NON_COMMERCIAL, restrictions
from .bundle import SUFFIX, opened_bundle
from .datapackage import profile
from .errors import ReleaseError
from .layout import DATAPACKAGE, MANIFEST, MD5SUMS, PARQUET_SUFFIX, SHA256SUMS
from .manifest import Manifest, json_schema_text
from .rebuild import compare_rebuilt
from .sums import file_hashes, listed_files, read_sums
from .verdict import VerifyResult


def _json(folder: Path, name: str, result: VerifyResult) -> Any:
    try:
        return json.loads((folder / name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        result.fail(name, "missing")
    except (OSError, ValueError) as exc:
        result.fail(name, f"not readable JSON: {exc}")
    return None


def _schema_errors(data: Any, schema: dict[str, Any], draft: type) -> list[str]:
    validator = draft(schema)
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(top level)'}: {e.message[:200]}"
            for e in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))]


def _check_sums(folder: Path, result: VerifyResult) -> dict[str, tuple[int, str, str]]:
    """Hash every file; check both sum lists and that every file is in them."""
    lists = {}
    for name, width in ((SHA256SUMS, 64), (MD5SUMS, 32)):
        try:
            lists[name] = read_sums(folder / name, width)
        except ReleaseError as exc:  # a list that cannot be read checks nothing
            where = f"{folder / name}:"
            result.fail(name, "line " + str(exc).removeprefix(where)
                        if (folder / name).is_file() else "missing")
    facts: dict[str, tuple[int, str, str]] = {}
    for name in listed_files(folder):
        path = folder / name
        if not path.is_file() or path.is_symlink():
            result.fail(name, "not a regular file (a release holds regular files only)")
            continue
        facts[name] = file_hashes(path)
        for list_name, index in ((SHA256SUMS, 1), (MD5SUMS, 2)):
            if list_name not in lists:
                continue
            want = lists[list_name].get(name)
            if want is None:
                result.fail(name, f"not listed in {list_name}")
            elif want != facts[name][index]:
                result.fail(name, f"{list_name} says {want}, the file's is "
                                  f"{facts[name][index]}")
    for list_name, listed in lists.items():
        for name in sorted(listed.keys() - facts.keys()):
            if not (folder / name).exists():
                result.fail(name, f"listed in {list_name} but missing")
    result.checked = len(facts)
    return facts


def _check_parquet(folder: Path, key: str, manifest: Manifest | None,
                   result: VerifyResult) -> None:
    """A data file's embedded licence and, when the manifest could be read, its entry there
    and row count."""
    path = folder / key
    try:
        meta = read_metadata(path)
        rows = pq.read_metadata(path).num_rows
    except InvalidTraceError as exc:
        result.fail(key, str(exc).split(": ", 1)[-1])
        return
    terms = restrictions(meta.get("licence") or {"redistributable": False})
    if NO_REDISTRIBUTION in terms:
        result.fail(key, f"its embedded licence "
                         f"({(meta.get('licence') or {}).get('spdx', 'none')}) forbids "
                         "redistribution")
    if manifest is None:
        return
    entry = next((f for f in manifest.files if f.key == key), None)
    if entry is None:
        result.fail(key, f"a Parquet file not listed in {MANIFEST}")
        return
    if NON_COMMERCIAL in terms and not entry.non_commercial:
        result.fail(key, f"its embedded licence forbids commercial use, and {MANIFEST} does "
                         "not say so")
    if rows != entry.rows or meta.get("rows") not in (None, rows):
        result.fail(key, f"{rows} rows in the file, {entry.rows} in {MANIFEST}, "
                         f"{meta.get('rows')} in its metadata")


def _check_manifest(folder: Path, facts: dict[str, tuple[int, str, str]],
                    result: VerifyResult) -> Manifest | None:
    data = _json(folder, MANIFEST, result)
    if data is None:
        return None
    for err in _schema_errors(data, json.loads(json_schema_text()),
                              jsonschema.Draft202012Validator):
        result.fail(MANIFEST, f"not valid against release.schema.json: {err}")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError:
        return None
    for f in manifest.files:
        got = facts.get(f.key)
        if got is None:
            result.fail(f.key, f"listed in {MANIFEST} but missing")
        elif got != (f.bytes, f.sha256, f.md5):
            result.fail(f.key, f"{MANIFEST} says {f.bytes} bytes, sha256 {f.sha256[:12]}..., "
                               f"md5 {f.md5[:12]}...; the file has {got[0]} bytes, sha256 "
                               f"{got[1][:12]}..., md5 {got[2][:12]}...")
    return manifest


def _check_datapackage(folder: Path, manifest: Manifest | None, result: VerifyResult) -> None:
    data = _json(folder, DATAPACKAGE, result)
    if data is None:
        return
    for err in _schema_errors(data, profile(), jsonschema.Draft7Validator):
        result.fail(DATAPACKAGE, f"not valid against the Data Package v2 profile: {err}")
    if manifest is None or not isinstance(data, dict):
        return
    want = {f.key: (f.bytes, f"sha256:{f.sha256}") for f in manifest.files}
    got = {r.get("path"): (r.get("bytes"), r.get("hash")) for r in data.get("resources", [])
           if isinstance(r, dict)}
    if got != want:
        result.fail(DATAPACKAGE, f"its resources' paths, bytes and hashes differ from "
                                 f"{MANIFEST}")


def verify_folder(folder: Path) -> VerifyResult:
    """Check one release folder (see the module docstring); never raises for a bad release,
    it reports."""
    folder = Path(folder)
    result = VerifyResult(folder.name)
    facts = _check_sums(folder, result)
    manifest = _check_manifest(folder, facts, result)
    for name in sorted(facts):
        if name.endswith(PARQUET_SUFFIX):
            _check_parquet(folder, name, manifest, result)
    _check_datapackage(folder, manifest, result)
    return result


def verify_release(path: Path, *, rebuild: bool = False, root: Path | None = None
                   ) -> VerifyResult:
    """Check a release folder or ``.tar.zst`` bundle; with ``rebuild``, also convert every
    trace again from the cache and compare (bytes, else rows and content hash)."""
    path = Path(path)
    if path.is_dir():
        return _verify(path, rebuild, root)
    if not path.name.endswith(SUFFIX):
        raise ReleaseError(f"{path}: expected a release folder or a {SUFFIX} bundle")
    with opened_bundle(path) as folder:
        result = _verify(folder, rebuild, root)
        result.folder = path.name
        return result


def _verify(folder: Path, rebuild: bool, root: Path | None) -> VerifyResult:
    result = verify_folder(folder)
    if rebuild and result.ok:
        compare_rebuilt(folder, result, root)
    return result
