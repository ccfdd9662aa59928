"""Zenodo-style dataset releases: build, verify, unpack (and deposit) a versioned, citable,
licence-aware archive of converted traces (``llmtraces release``, docs/release.md)."""
