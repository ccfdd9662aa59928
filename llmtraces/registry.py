"""The source registry: ``registry/<id>.toml`` files loaded into typed, validated models.

The pydantic models below are the one declaration of a registry entry;
``schemas/registry.schema.json`` is generated from them (a test keeps it in sync) and any
malformed file fails loudly with its path and the dotted field that is wrong.
"""

from __future__ import annotations

import json
import re
import tomllib
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from ._plugins import did_you_mean
from .errors import RegistryError, UnknownSourceError
from .paths import registry_dir
from .timing import TimeSemantics

_ID = r"^[a-z0-9][a-z0-9._-]*$"
#: The most UTF-8 bytes of a name: the cache adds suffixes (``.verified``) within the
#: file system's 255.
MAX_NAME_BYTES = 200
_WEB_URL = re.compile(r"^https?://[^/?#\s]")


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: a value quoted in a one-line error."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


def name_problem(name: str) -> str | None:
    """Why ``name`` (a trace id, an archive key) cannot be one folder name in the cache, or
    None: nothing a registry or a host names may land outside its folder."""
    if not name:
        return "is empty"
    if name in (".", ".."):
        return "is a relative folder ('.' or '..')"
    if "/" in name or "\\" in name:
        return "holds a path separator"
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        return "holds a control character"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


def file_name_problem(name: str) -> str | None:
    """:func:`name_problem` for a cached file's name, which also may not start with ``.``
    (the cache's own files, such as ``.listing.json``, do)."""
    if name.startswith(".") and name not in (".", ".."):
        return "starts with '.', which the cache keeps for its own files"
    return name_problem(name)


def is_web_url(url: str) -> bool:
    """Whether ``url`` is an ``http://`` or ``https://`` URL with a host: the only kind a
    registry or a host's answer may name (a ``file://`` one would copy local files, such as
    ``/proc/self/environ``, into the cache)."""
    return bool(_WEB_URL.match(url))


def _checked(problem: Callable[[str], str | None], what: str) -> Callable[[str], str]:
    """A pydantic validator refusing a value that ``problem`` finds fault with."""
    def check(value: str) -> str:
        why = problem(value)
        if why:
            raise ValueError(f"{shown(value)} {why} (it becomes a {what} in the cache)")
        return value
    return check


def _web_url(url: str) -> str:
    """A pydantic validator: http(s) URLs only, from a registry."""
    if not is_web_url(url):
        raise ValueError(f"{shown(url)} is not an http:// or https:// URL (a local folder or "
                         "file is given on the command line: --mirror file:///folder, "
                         "--file PATH)")
    return url


_NAME_RULE = r"^(?!\.{1,2}$)[^/\\\u0000-\u001f\u007f-\u009f]{1,200}$"
_FILE_RULE = r"^(?!\.)[^/\\\u0000-\u001f\u007f-\u009f]{1,200}$"
#: A trace id or archive key: one folder name in the cache.
Name = Annotated[str, AfterValidator(_checked(name_problem, "folder name"))]
#: A cached file's name: one file name in the cache, not hidden.
FileName = Annotated[str, AfterValidator(_checked(file_name_problem, "file name")),
                     WithJsonSchema({"type": "string", "pattern": _FILE_RULE})]
#: A URL from the registry: http(s) only.
WebUrl = Annotated[str, AfterValidator(_web_url),
                   WithJsonSchema({"type": "string", "pattern": r"^https?://"})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Licence(_Strict):
    """Terms the data is published under, as the upstream states them."""

    spdx: str = Field(description="SPDX id, or LicenseRef-<name> for a custom licence.")
    url: str = Field(description="Where the licence text is.")
    redistributable: bool = Field(description="Whether copies may be re-hosted (mirrors, bundles).")
    commercial_use: bool = Field(description="Whether commercial use is allowed.")
    attribution: str = Field(description="What users must credit, in one line.")


class Citation(_Strict):
    """How to cite the source."""

    text: str = Field(description="Human-readable reference.")
    bibtex: str = Field(description="BibTeX entry.")
    doi: str | None = Field(default=None, description="DOI of the paper or dataset, if any.")




class ZenodoRef(_Strict):
    """A file in a Zenodo record; its size and md5 come from the record API at fetch time."""

    record: str = Field(pattern=r"^[0-9]+$", description="Record id of one version (pins the "
                        "version DOI 10.5281/zenodo.<record>).")
    key: str = Field(description="File name within the record.")


class GDriveRef(_Strict):
    """A publicly shared Google Drive file, fetched through the large-file confirmation step."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="The file id from its share link.")


class HFRef(_Strict):
    """A file in a Hugging Face Hub dataset repository (gated ones use the user's own token)."""

    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", description="owner/name")
    path: str = Field(description="Path of the file in the repository.")
    revision: str = Field(default="main", description="Branch, tag or commit; pin a commit.")


class FileEntry(_Strict):
    """One downloadable native file, pinned by size and checksum."""

    name: FileName = Field(description="File name in the cache.")
    url: WebUrl = Field(description="Pinned upstream download URL (http or https).")
    mirrors: tuple[WebUrl, ...] = Field(default=(), description="Fallback URLs (http or "
                                        "https), tried in order.")
    size: int | None = Field(default=None, ge=0,
                             description="Exact size in bytes; omit only where unknown.")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    md5: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    git_blob: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{40}$",
        description="git blob id: sha1 of 'blob <size>\\0' + content.")
    rows: int | None = Field(default=None, ge=0, description="Exact number of data records.")
    compression: Literal["none", "gzip"] = "none"
    unpacked_limit: int | None = Field(
        default=None, ge=0, description="For an archive (.tar, .tar.gz): the most bytes its "
        "members may unpack to, in all; reading stops with an error past it (a guard against "
        "decompression bombs, set above the size the upstream states).")
    bundled: bool = Field(
        default=False, description="A verified copy ships inside the package (data/<id>/<name>).")
    zenodo: ZenodoRef | None = Field(
        default=None, description="Resolve the download URL, size and md5 from this Zenodo "
        "record at fetch time (pins in this file, where given, must agree).")
    gdrive: GDriveRef | None = Field(
        default=None, description="Resolve the download link of this Google Drive file at "
        "fetch time (Drive publishes no checksum: pin one here, or say `unverified`).")
    hf: HFRef | None = Field(
        default=None, description="Resolve this Hugging Face Hub file at fetch time: its size "
        "and sha256 from the Hub's tree API, the download with the user's token.")
    provenance: str | None = Field(
        default=None, description="Where the size and checksums were read (the upstream "
        "release, a Git LFS pointer, third parties), shown in the docs' Files tables.")
    unverified: str | None = Field(
        default=None, description="Why no checksum is pinned (none published yet); downloads "
        "are then checked by size only, with a warning. `llmtraces registry update-hashes` "
        "pins one.")

    @model_validator(mode="after")
    def _needs_checksum(self) -> FileEntry:
        if not (self.sha256 or self.md5 or self.git_blob or self.unverified or self.zenodo
                or self.hf):
            raise ValueError("a file needs at least one checksum (sha256, md5 or git_blob), a "
                             "`zenodo` record that publishes one, or `unverified` saying why "
                             "none is known")
        if self.bundled and (self.sha256 is None or self.size is None):
            raise ValueError("a bundled file needs its size and sha256")
        return self


class Member(_Strict):
    """A trace that is one file inside an archive of the source (``[archives.<key>]``)."""

    archive: str = Field(description="Key of the archive in the source's `archives` table.")
    path: str = Field(description="Path of the member inside the archive. A leading `./` is "
                      "ignored, and a path that is not found matches a unique member of the "
                      "same file name (archives differ in their top folder).")
    size: int | None = Field(default=None, ge=0, description="Exact member size in bytes.")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    md5: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    git_blob: str | None = Field(default=None, pattern=r"^[0-9a-f]{40}$")
    rows: int | None = Field(default=None, ge=0, description="Exact number of data records.")

    @property
    def name(self) -> str:
        """The member's file name (its path's last part)."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]


class PublishedStat(_Strict):
    """A statistic of a trace that its paper or README states (``llmtraces stats --check``)."""

    value: float = Field(description="The value as published, in the statistic's unit.")
    tolerance: float = Field(ge=0, description="Largest |measured - value| that agrees "
                             "(the published rounding, or the gap a definition leaves).")
    source: str = Field(description="Where it is stated: paper section, figure or table, "
                        "README line.")


class Trace(_Strict):
    """One trace of a source: a file (or a member of one of the source's archives) read by
    one native format."""

    description: str
    service: str | None = Field(
        default=None, description="Workload class written to the service column where the "
        "native data has none.")
    format: str | None = Field(
        default=None, description="Native reader of this trace when it differs from the "
        "source's `format` (a source whose files come in several layouts).")
    time: TimeSemantics | None = Field(
        default=None, description="Time semantics of this trace when they differ from the "
        "source's `[time]` (a trace of another kind, e.g. timed samples beside untimed "
        "sweeps).")
    file: FileEntry | None = Field(default=None, description="The trace's own file.")
    member: Member | None = Field(
        default=None, description="Or: the trace is this member of one of the source's "
        "archives.")
    published: dict[str, PublishedStat] = Field(
        default_factory=dict, description="Statistics the publisher states, keyed by their "
        "dotted path in `llmtraces stats --json` (e.g. `lengths.input.p50`).")

    @model_validator(mode="after")
    def _file_or_member(self) -> Trace:
        if (self.file is None) == (self.member is None):
            raise ValueError("a trace has exactly one of `file` (its own file) or `member` (a "
                             "file inside one of the source's archives)")
        return self

    @property
    def pins(self) -> FileEntry | Member:
        """What the trace's native bytes are pinned to: its file, or its archive member."""
        pinned = self.file or self.member
        assert pinned is not None  # the validator guarantees one
        return pinned

    @property
    def native_name(self) -> str:
        """File name of the trace's native bytes (the member's name for an archive member)."""
        return self.pins.name


#: A source ``format`` (or trace ``format``) that means: recognise each file from its header.
AUTO_FORMAT = "auto"


class Discover(_Strict):
    """Where a source's file list is read at fetch time (an archive of many traces)."""

    zenodo: str = Field(pattern=r"^[0-9]+$", description="Zenodo record id: every file of "
                        "the record not pinned under `traces` becomes a trace at fetch time, "
                        "with the record's size and md5 (`registry update-hashes` pins them).")


class Source(_Strict):
    """A registry entry: everything needed to fetch, check, convert and cite one source."""

    id: str = Field(pattern=_ID)
    name: str
    description: str
    homepage: str
    format: str = Field(description="Native reader name (llmtraces/formats), or `auto`: each "
                        "file's reader is recognised from its header or Parquet schema.")
    layout: str = Field(default="", description="The native layout in a few words, for the "
                        "README's generated sources table.")
    licence: Licence
    citation: Citation
    time: TimeSemantics
    quirks: tuple[str, ...] = ()
    archives: dict[Name, FileEntry] = Field(
        default_factory=dict, description="Archives (.tar, .tar.gz) whose members are traces; "
        "each is downloaded and verified once, and its members are read from it.",
        json_schema_extra={"propertyNames": {"pattern": _NAME_RULE}})
    discover: Discover | None = Field(
        default=None, description="Read more traces from a host's file list at fetch time.")
    traces: dict[Name, Trace] = Field(
        default_factory=dict, description="The traces, by id (a folder name in the cache).",
        json_schema_extra={"propertyNames": {"pattern": _NAME_RULE}})

    @model_validator(mode="after")
    def _consistent(self) -> Source:
        if not self.traces and self.discover is None:
            raise ValueError("traces: a source needs at least one trace (or `discover`)")
        for tid, tr in self.traces.items():
            if tr.member is not None and tr.member.archive not in self.archives:
                raise ValueError(f"traces.{tid}.member.archive: no archive "
                                 f"{tr.member.archive!r}; archives: {', '.join(self.archives)}")
        if not self.licence.redistributable:
            shipped = [f"traces.{tid}.file" for tid, tr in self.traces.items()
                       if tr.file is not None and tr.file.bundled]
            shipped += [f"archives.{key}" for key, f in self.archives.items() if f.bundled]
            if shipped:
                raise ValueError(f"{shipped[0]}.bundled: the licence forbids redistribution, "
                                 "so the package cannot ship a copy")
        return self

    def download(self, trace_id: str) -> FileEntry:
        """The file to download for one trace: its own file, or the archive holding it."""
        tr = self.traces[trace_id]
        if tr.member is not None:
            return self.archives[tr.member.archive]
        assert tr.file is not None
        return tr.file

    def trace(self, trace_id: str | None) -> tuple[str, Trace]:
        """The named trace, or the only one; a clear error for an unknown or missing name."""
        if trace_id is None:
            if len(self.traces) == 1:
                return next(iter(self.traces.items()))
            raise UnknownSourceError(
                f"{self.id} has traces {', '.join(self.traces)}: pick one with trace=/--trace")
        try:
            return trace_id, self.traces[trace_id]
        except KeyError:
            hint = (" (its file list comes from the host: run `llmtraces fetch "
                    f"{self.id}` once online)" if self.discover is not None else "")
            raise UnknownSourceError(
                f"{self.id} has no trace {trace_id!r}{did_you_mean(trace_id, self.traces)}; "
                f"it has: {', '.join(self.traces) or '(none yet)'}{hint}") from None

    def time_of(self, trace_id: str) -> TimeSemantics:
        """The time semantics of one trace: its own ``[time]``, else the source's."""
        return self.traces[trace_id].time or self.time

    def format_of(self, trace_id: str) -> str:
        """The native reader name of one trace: its own ``format``, else the source's."""
        return self.traces[trace_id].format or self.format

    def select(self, trace_id: str | None) -> dict[str, Trace]:
        """All traces when ``trace_id`` is None; the traces of an archive when it names one of
        the source's archives; else just the named trace."""
        if trace_id is None:
            return dict(self.traces)
        if trace_id in self.archives and trace_id not in self.traces:
            return {t: tr for t, tr in self.traces.items()
                    if tr.member is not None and tr.member.archive == trace_id}
        name, trace = self.trace(trace_id)
        return {name: trace}


def _where(loc: tuple[int | str, ...]) -> str:
    """The dotted field of a validation error; an id that is not a plain name quoted, and
    ``(the id)`` for an error in the id itself rather than in its table."""
    key = bool(loc) and loc[-1] == "[key]"
    parts = [p if isinstance(p, int) or not name_problem(p) and p.isprintable() else shown(p)
             for p in (loc[:-1] if key else loc)]
    return ".".join(str(p) for p in parts) + (" (the id)" if key else "") or "(top level)"


def _describe(err: ValidationError, path: Path) -> str:
    return "\n".join(f"{path}: {_where(e['loc'])}: {e['msg']}" for e in err.errors())


def _parse(path: Path) -> object:
    """The TOML document of ``path``; :class:`RegistryError` in one line when it is not
    readable, not UTF-8, not TOML, or nested too deeply for the parser."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise RegistryError(f"{path}: not valid TOML: byte {exc.start} is not UTF-8 "
                            "text") from None
    except RecursionError:
        raise RegistryError(f"{path}: not valid TOML: arrays or tables nested too "
                            "deeply") from None
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror or exc}") from None


def load_source_file(path: Path) -> Source:
    """Parse and validate one registry file; :class:`RegistryError` names the file and field.

    The names of readers are checked where a source is read (``formats.check_formats``): the
    registry sits below the formats and imports none of them.
    """
    data = _parse(path)
    try:
        source = Source.model_validate(data)
    except ValidationError as exc:
        raise RegistryError(_describe(exc, path)) from None
    except RecursionError:
        raise RegistryError(f"{path}: nested too deeply to be a registry entry") from None
    if source.id != path.stem:
        raise RegistryError(f"{path}: id: {source.id!r} must equal the file name {path.stem!r}")
    return source


@lru_cache(maxsize=8)
def load_dir(directory: Path) -> dict[str, Source]:
    """Every registry file of ``directory`` (resolved), parsed once per process."""
    return {p.stem: load_source_file(p) for p in sorted(directory.glob("*.toml"))}


def load_registry(directory: Path | None = None) -> dict[str, Source]:
    """Every source in ``directory`` (default: the shipped registry), keyed by id."""
    return load_dir((directory or registry_dir()).resolve())


def get_source(source_id: str, directory: Path | None = None) -> Source:
    """The registry entry for ``source_id``, or an error listing the known ids."""
    reg = load_registry(directory)
    try:
        return reg[source_id]
    except KeyError:
        raise UnknownSourceError(
            f"unknown source {source_id!r}{did_you_mean(source_id, reg)}; known sources: "
            f"{', '.join(reg) or '(none)'} (see `llmtraces list`)") from None


def find_file(name: str, directory: Path | None = None) -> tuple[Source, str, Trace] | None:
    """The registry trace whose native file (or archive member) is called ``name``, if any."""
    for source in load_registry(directory).values():
        for trace_id, trace in source.traces.items():
            if trace.native_name == name:
                return source, trace_id, trace
    return None


def json_schema_text() -> str:
    """The exact text of ``schemas/registry.schema.json``, generated from :class:`Source`."""
    schema = Source.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://llmtraces.org/schemas/registry.schema.json"
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
