"""``llmtraces release deposit``: put a release folder on Zenodo through its deposit API.

Create a draft (or a new version of a record, whose inherited files are deleted first), PUT
each file into the draft's bucket and check the md5 Zenodo answers, PUT the metadata of
``.zenodo.json``, read the draft back and compare, and publish only when asked. Each step is
recorded in ``DIR/.deposit-state.json``, so a rerun after a crash resumes the same draft.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tqdm import tqdm

from ..fetching.transfer import Settings
from ..text.limits import size_text
from .deposit_local import (
    STATE_VERSION,
    LocalFile,
    check_limits,
    is_bundle,
    load_metadata,
    load_state,
    save_state,
    scan,
    scan_bundle,
    state_path,
)
from .zenodo_client import (
    DEFAULT_URL,
    ZenodoClient,
    ZenodoError,
    check_base_url,
    token_from_env,
)

Log = Callable[[str], None]
DEPOSITIONS = "/api/deposit/depositions"


def _quiet(_: str) -> None:
    """A log that tells nothing."""


@dataclass(frozen=True)
class DepositOptions:
    """What ``llmtraces release deposit`` was asked to do."""

    directory: Path
    zenodo_url: str = DEFAULT_URL
    #: the record id (the latest version's) to deposit a new version of
    new_version_of: int | None = None
    publish: bool = False
    dry_run: bool = False
    #: asked before publishing, with the draft URL; None publishes without asking (--yes)
    confirm: Callable[[str], bool] | None = None
    log: Log = _quiet
    show_progress: bool = False


@dataclass
class DepositResult:
    """What a deposit did (or, with ``--dry-run``, would do)."""

    deposition_id: int | None = None
    draft_url: str | None = None
    doi: str | None = None
    record_url: str | None = None
    published: bool = False
    #: the state file's deposition was published by an earlier run: nothing was sent
    already: bool = False
    uploaded: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary shown to the user."""
        if self.plan:
            return self.plan
        done = (f"uploaded {_files(len(self.uploaded))}, kept {len(self.kept)} already there"
                + (f", deleted {len(self.deleted)}" if self.deleted else ""))
        if self.already:
            return [f"deposition {self.deposition_id} was already published; nothing sent",
                    f"DOI {self.doi}", f"record {self.record_url}"]
        if self.published:
            return [f"published deposition {self.deposition_id} ({done})",
                    f"DOI {self.doi}", f"record {self.record_url}"]
        return [f"draft deposition {self.deposition_id} ready, not published ({done})",
                f"review it at {self.draft_url}, then publish there or rerun with --publish"]


def deposit(opts: DepositOptions) -> DepositResult:
    """Deposit ``opts.directory`` on Zenodo (see the module docstring)."""
    target = Path(opts.directory)
    base = check_base_url(opts.zenodo_url)
    files = scan_bundle(target) if is_bundle(target) else scan(target)
    check_limits(target, files)
    meta_path, metadata = load_metadata(target)
    where = state_path(target)
    state = load_state(where)
    if state is not None:
        _check_state_matches(where, state, base, opts.new_version_of)
    if opts.dry_run:
        return DepositResult(plan=_plan(opts, base, files, meta_path, metadata, state))
    client = ZenodoClient(base, token_from_env(base), Settings.from_env(), opts.log)
    return _Run(client, where, files, metadata, opts).go(state)


def _check_state_matches(where: Path, state: dict[str, Any], base: str,
                         new_version_of: int | None) -> None:
    """Refuse to resume a state file made for another server or another record."""
    if state.get("zenodo_url") != base:
        raise ZenodoError(f"{where} is a deposit on {state.get('zenodo_url')}: pass that "
                          "server, or delete the file to start a new draft here")
    if new_version_of is not None and state.get("new_version_of") != new_version_of:
        raise ZenodoError(f"{where} resumes deposition {state['deposition_id']}, not a new "
                          f"version of {new_version_of}; delete the file to start over")


def _plan(opts: DepositOptions, base: str, files: list[LocalFile], meta_path: str,
          metadata: dict[str, Any], state: dict[str, Any] | None) -> list[str]:
    """The requests a deposit would make, in order, without sending any."""
    total = sum(f.size for f in files)
    done = state["files"] if state else {}
    todo = [f for f in files if done.get(f.key, {}).get("md5") != f.md5]
    if state is not None:
        first = (f"resume draft deposition {state['deposition_id']} on {base} "
                 f"(from {state_path(Path(opts.directory)).name}); delete its files not "
                 "uploaded by this deposit")
    elif opts.new_version_of is not None:
        first = (f"POST {base}{DEPOSITIONS}/{opts.new_version_of}/actions/newversion, "
                 "then DELETE every inherited file of the new draft")
    else:
        first = f"POST {base}{DEPOSITIONS} (a new draft)"
    lines = [f"dry run: nothing is sent; {_files(len(files))}, {size_text(total)} "
             f"({total:,} bytes) from {opts.directory}", first]
    lines += [f"PUT <bucket>/{f.key} ({f.size:,} bytes, md5 {f.md5})" for f in todo]
    lines += [f"keep {f.key} (already uploaded, md5 {f.md5})" for f in files if f not in todo]
    lines.append(f"PUT metadata from {meta_path}: {metadata['title']!r}"
                 + (f" version {metadata['version']}" if metadata.get("version") else ""))
    lines.append("POST actions/publish (after confirmation)" if opts.publish and opts.confirm
                 else "POST actions/publish" if opts.publish
                 else "stop at the draft (not published without --publish)")
    return lines


class _Run:
    """One deposit against a server: the draft, its files, metadata and publication."""

    def __init__(self, client: ZenodoClient, where: Path, files: list[LocalFile],
                 metadata: dict[str, Any], opts: DepositOptions) -> None:
        self.client, self.where, self.files = client, where, files
        self.metadata, self.opts = metadata, opts
        self.result = DepositResult()
        self.state: dict[str, Any] = {}

    def save(self) -> None:
        save_state(self.where, self.state)

    def go(self, state: dict[str, Any] | None) -> DepositResult:
        """Run every step, resuming ``state`` when a previous run left one."""
        dep = self._resume(state) if state is not None else self._start()
        self.result.deposition_id = dep["id"]
        self.result.draft_url = _link(dep, "html") or self.client.url(f"/deposit/{dep['id']}")
        if dep.get("submitted"):
            self.result.already = True
            return self._published(dep)
        self._sync_files(dep)
        self._put_metadata(dep["id"])
        self._compare(dep["id"])
        if not self.opts.publish:
            return self.result
        if self.opts.confirm is not None and not self.opts.confirm(self.result.draft_url):
            self.client.log("not published: the draft stays as it is")
            return self.result
        published = self.client.json(
            "POST", f"{DEPOSITIONS}/{dep['id']}/actions/publish",
            f"publish deposition {dep['id']}", ok=(202,), idempotent=False)
        return self._published(published)

    def _start(self) -> dict[str, Any]:
        """A new draft, or a new version's draft; the state file is written at once."""
        base = self.client.base
        if self.opts.new_version_of is None:
            dep = self.client.json("POST", DEPOSITIONS, "create a deposition", json={},
                                   ok=(201,), idempotent=False)
            self.client.log(f"created draft deposition {dep.get('id')} on {base}")
        else:
            rec = self.opts.new_version_of
            old = self.client.json("POST", f"{DEPOSITIONS}/{rec}/actions/newversion",
                                   f"new version of record {rec}", ok=(201,),
                                   idempotent=False)
            draft = self.client.same_origin(_link(old, "latest_draft"), "latest_draft")
            dep = self.client.json("GET", draft, "read the new version's draft")
            self.client.log(f"new version of record {rec}: draft deposition {dep.get('id')}")
        if not isinstance(dep.get("id"), int):
            raise ZenodoError(f"{base}: the new deposition has no numeric id")
        bucket = self.client.same_origin(_link(dep, "bucket"), "bucket")
        self.state = {"state_version": STATE_VERSION, "zenodo_url": base,
                      "deposition_id": dep["id"], "conceptrecid": dep.get("conceptrecid"),
                      "bucket": bucket, "new_version_of": self.opts.new_version_of,
                      "files": {}, "published": None}
        self.save()
        return dep

    def _resume(self, state: dict[str, Any]) -> dict[str, Any]:
        """The draft the state file names, as the server has it now."""
        self.state = state
        dep_id = state["deposition_id"]
        resp, _ = self.client.call("GET", self.client.url(f"{DEPOSITIONS}/{dep_id}"),
                                   f"read deposition {dep_id}", ok=(200, 404, 410))
        if resp.status_code != 200:
            raise ZenodoError(f"{self.where} names deposition {dep_id}, which "
                              f"{self.client.base} no longer has (HTTP {resp.status_code}); "
                              "delete the file to start a new draft")
        try:
            dep = resp.json()
        except ValueError:
            dep = None
        if not isinstance(dep, dict) or dep.get("id") != dep_id:
            raise ZenodoError(f"read deposition {dep_id}: {self.client.base} did not answer "
                              "that deposition as a JSON object")
        self.client.same_origin(_link(dep, "bucket") or state["bucket"], "bucket")
        self.client.log(f"resuming draft deposition {dep_id} (from {self.where.name})")
        return dep

    def _sync_files(self, dep: dict[str, Any]) -> None:
        """Make the draft's files exactly the folder's: delete every file this deposit did
        not upload (inherited by a new version, or stale), then PUT what is missing."""
        ours = self.state["files"]
        local = {f.key: f for f in self.files}
        present: set[str] = set()
        for remote in dep.get("files") or []:
            if not isinstance(remote, dict):
                raise ZenodoError(f"deposition {dep['id']}: a files entry is not an object")
            key, md5 = remote.get("filename"), _md5_of(remote.get("checksum"))
            mine = local.get(key) if isinstance(key, str) else None
            if mine is not None and md5 == mine.md5 and ours.get(key, {}).get("md5") == md5:
                present.add(mine.key)
                continue
            self.client.call("DELETE", self.client.url(
                f"{DEPOSITIONS}/{dep['id']}/files/{quote(str(remote.get('id')), safe='')}"),
                f"delete {key} from the draft")
            ours.pop(key, None)
            self.save()
            self.result.deleted.append(str(key))
            self.client.log(f"deleted {key} from the draft (not uploaded by this deposit)")
        self.result.kept = sorted(present)
        todo = [f for f in self.files if f.key not in present]
        total = sum(f.size for f in todo)
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                  desc="upload", disable=not self.opts.show_progress, file=sys.stderr) as bar:
            for f in todo:
                self._upload(f, bar.update)
                ours[f.key] = {"md5": f.md5, "size": f.size}
                self.save()
                self.result.uploaded.append(f.key)

    def _upload(self, f: LocalFile, progress: Callable[[int], None]) -> None:
        """PUT one file from a fresh handle and check Zenodo's md5 and size; a mismatch is
        sent again, up to the retry count, then a clear error."""
        tries = self.client.settings.tries
        url = f"{self.state['bucket']}/{quote(f.key, safe='')}"
        for attempt in range(1, tries + 1):
            self.client.log(f"uploading {f.key} ({size_text(f.size)})")
            resp, sent = self.client.call("PUT", url, f"upload {f.key}",
                                          upload=(f.path, f.size, progress), ok=(200, 201))
            assert sent is not None
            read_md5 = sent.md5.hexdigest()
            if read_md5 != f.md5 or sent.sent != f.size:
                raise ZenodoError(f"{f.path}: changed since MD5SUMS was written (read "
                                  f"{sent.sent:,} bytes, md5 {read_md5}; expected {f.size:,} "
                                  f"bytes, md5 {f.md5}): run llmtraces release verify")
            try:
                answer = resp.json()
            except ValueError:
                answer = None
            got = _md5_of(answer.get("checksum")) if isinstance(answer, dict) else None
            size = answer.get("size") if isinstance(answer, dict) else None
            if got == f.md5 and size in (None, f.size):
                return
            if attempt == tries:
                raise ZenodoError(f"upload {f.key}: Zenodo stored md5 {got} ({size} bytes), "
                                  f"the file has md5 {f.md5} ({f.size:,} bytes), after "
                                  f"{tries} tries; rerun later (the deposit resumes)")
            self.client.log(f"upload {f.key}: Zenodo stored md5 {got}, expected {f.md5}; "
                            f"sending again (try {attempt + 1}/{tries})")

    def _put_metadata(self, dep_id: int) -> None:
        """PUT the whole metadata object (a new version must resend all of it)."""
        self.client.json("PUT", f"{DEPOSITIONS}/{dep_id}", f"metadata of deposition {dep_id}",
                         json={"metadata": self.metadata})
        self.client.log(f"metadata sent: {self.metadata['title']!r}")

    def _compare(self, dep_id: int) -> None:
        """Read the draft back: its files must be the folder's, key for key and md5 for md5."""
        dep = self.client.json("GET", f"{DEPOSITIONS}/{dep_id}", f"read deposition {dep_id}")
        remote = {str(r.get("filename")): _md5_of(r.get("checksum"))
                  for r in dep.get("files") or [] if isinstance(r, dict)}
        local: dict[str, str | None] = {f.key: f.md5 for f in self.files}
        if remote != local:
            wrong = sorted(k for k in set(remote) | set(local)
                           if remote.get(k) != local.get(k))
            raise ZenodoError(f"deposition {dep_id} does not match {self.opts.directory}: "
                              f"{', '.join(wrong[:5])} differ; run the same "
                              "command again to resume")

    def _published(self, dep: dict[str, Any]) -> DepositResult:
        """Record the publication in the state file, read the record's DOI and URL, and
        check that its files are the release's."""
        rec_id = dep.get("record_id") or dep["id"]
        resp, _ = self.client.call("GET", self.client.url(f"/api/records/{rec_id}"),
                                   f"read record {rec_id}", ok=(200, 404))
        record: dict[str, Any] = {}
        if resp.status_code == 200:
            try:
                record = resp.json()
            except ValueError:
                record = {}
        if resp.status_code != 200 or not isinstance(record, dict):
            self.client.log(f"record {rec_id} is not readable yet (HTTP {resp.status_code}); "
                            "its DOI comes from the deposition")
            record = {}
        files = record.get("files")
        if isinstance(files, list):
            remote = {str(f.get("key")): _md5_of(f.get("checksum"))
                      for f in files if isinstance(f, dict)}
            if remote != {f.key: f.md5 for f in self.files}:
                raise ZenodoError(f"published record {rec_id} does not hold the files of "
                                  f"{self.opts.directory} (keys or md5 differ)")
        doi = record.get("doi") or dep.get("doi")
        url = _link(record, "self_html") or _link(record, "html") or \
            self.client.url(f"/records/{rec_id}")
        self.state["published"] = {"record_id": rec_id, "doi": doi, "record_url": url}
        self.save()
        self.result.published, self.result.doi, self.result.record_url = True, doi, url
        self.client.log(f"published record {rec_id}: DOI {doi}")
        return self.result


def _files(n: int) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} file{'' if n == 1 else 's'}"


def _link(obj: dict[str, Any], name: str) -> str | None:
    """``obj["links"][name]`` when it is a string."""
    links = obj.get("links")
    value = links.get(name) if isinstance(links, dict) else None
    return value if isinstance(value, str) else None


def _md5_of(checksum: object) -> str | None:
    """The md5 hex digest of a Zenodo checksum (``md5:<hex>`` in a bucket answer, bare hex in
    a deposition's file list)."""
    if not isinstance(checksum, str):
        return None
    algo, sep, digest = checksum.partition(":")
    return (digest if algo == "md5" else None) if sep else checksum
