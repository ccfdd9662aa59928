"""Which sources a release may carry, and LICENSES.md: each file's licence, attribution and a
notice of modification. The rules are :mod:`llmtraces.licensing`'s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..licensing import NO_REDISTRIBUTION, restrictions
from ..paths import bundled_dir
from ..registry import Source
from .errors import ReleaseError
from .layout import RECIPES
from .manifest import Excluded, Manifest


@dataclass
class Selection:
    """The sources asked for, split by what their licences allow."""

    data: list[Source] = field(default_factory=list)
    recipes: list[Source] = field(default_factory=list)
    excluded: list[Excluded] = field(default_factory=list)


def select(registry: dict[str, Source], wanted: Sequence[str] | None, *,
           allow_non_commercial: bool) -> Selection:
    """Split the sources asked for (``None``: all) into those whose data goes in, those that
    get a recipe (not redistributable) and those left out (non-commercial without
    ``allow_non_commercial``, with ``--all`` only). A release with no data is an error."""
    explicit = wanted is not None
    ids = list(dict.fromkeys(wanted)) if wanted is not None else sorted(registry)
    unknown = [i for i in ids if i not in registry]
    if unknown:
        raise ReleaseError(f"--sources: unknown source {unknown[0]!r}; known sources: "
                           f"{', '.join(sorted(registry))}")
    out = Selection()
    for sid in sorted(ids):
        source = registry[sid]
        terms = restrictions(source.licence)
        if NO_REDISTRIBUTION in terms:
            out.recipes.append(source)
            out.excluded.append(Excluded(source=sid, reason=f"{source.licence.spdx}: "
                                         "no redistribution", recipe=f"{RECIPES}#{sid}"))
        elif terms and not allow_non_commercial:
            if explicit:
                raise ReleaseError(f"--sources {sid}: its licence ({source.licence.spdx}) "
                                   "forbids commercial use; pass --allow-non-commercial to "
                                   "release it (it is then listed as non-commercial)")
            out.excluded.append(Excluded(source=sid, reason=f"{source.licence.spdx}: "
                                         "non-commercial (not asked with "
                                         "--allow-non-commercial)"))
        else:
            out.data.append(source)
    if not out.data:
        names = ", ".join(s.id for s in out.recipes) or ", ".join(ids)
        raise ReleaseError(f"nothing to release: {names} may not be redistributed (licence "
                           "forbids it), so a release of it alone would hold no data; add a "
                           "redistributable source (llmtraces list shows the terms)")
    return out


def licence_texts(manifest: Manifest) -> dict[str, Path]:
    """``LICENSE-<spdx>.txt`` -> the shipped text, for each licence of the release's files
    whose text must travel with copies (``llmtraces/data/licences/``)."""
    folder = bundled_dir() / "licences"
    out = {}
    for spdx in sorted({f.licence.spdx for f in manifest.files}):
        text = folder / f"{spdx}.txt"
        if text.is_file():
            out[f"LICENSE-{spdx}.txt"] = text
    return out


def licenses_md(manifest: Manifest, sources: dict[str, Source]) -> str:
    """LICENSES.md: per file, its licence, what to credit, whom to cite and what was changed."""
    lines = [f"# Licences of llmtraces traces {manifest.release.version}", "",
             "Each file keeps the licence of the data it was converted from. Credit the "
             "upstream as stated, and cite the paper given.", ""]
    texts = {name.removeprefix("LICENSE-").removesuffix(".txt"): name
             for name in licence_texts(manifest)}
    for f in manifest.files:
        lic = f.licence
        terms = " (**non-commercial use only**)" if f.non_commercial else ""
        full = f" (full text: `{texts[lic.spdx]}`)" if lic.spdx in texts else ""
        lines += [f"## {f.key}", "",
                  f"- Licence: {lic.spdx}{terms}, {lic.url}{full}",
                  *([f"- Copyright notice: the upstream's, in {lic.url} (the MIT licence asks "
                     "for it with every copy)"] if lic.spdx == "MIT" else []),
                  f"- Source: {sources[f.source].name} ({sources[f.source].homepage})",
                  f"- Attribution: {lic.attribution}",
                  f"- Cite: {f.citation.text}" + (f" doi:{f.citation.doi}" if f.citation.doi
                                                   else ""),
                  f"- Modified: converted by llmtraces {manifest.build.llmtraces} from "
                  f"`{f.native.file}`" + (f" (sha256 {f.native.sha256})" if f.native.sha256
                                          else "")
                  + " into the llmtraces unified schema (one row per request, times in "
                    "microseconds, Parquet; native fields with no column kept in `extra`).", ""]
    if manifest.excluded:
        lines += ["## Not included", ""]
        for e in manifest.excluded:
            how = f"; rebuild it locally with the recipe in {e.recipe}" if e.recipe else ""
            lines.append(f"- {e.source}: {e.reason}{how}.")
        lines.append("")
    lines += ["The llmtraces software that made these files is MIT-licensed; its licence does "
              "not apply to the data.", ""]
    return "\n".join(lines)
