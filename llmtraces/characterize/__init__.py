"""Workload characterization: ``llmtraces.stats`` (one pass over any trace), the published
figures it is checked against, ``compare`` of two traces and the figures of ``plot``.

Named ``characterize``, not ``stats``: a subpackage called ``stats`` would replace the public
function :func:`llmtraces.stats` on the package as soon as it was imported.
"""
