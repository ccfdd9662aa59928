"""The read -> check -> write pipeline and the re-readable trace view.

``scan`` recognises a native file and streams it through its reader and the checks;
``write`` writes a stream or a file in any format; ``unified`` gives the cache's unified
Parquet file of a registry trace; ``view`` is :class:`TraceView`, which ``inputs`` opens on any
input; ``convert`` and ``validate`` are what the command line runs. The API, the transforms and
the replayer build on these.
"""
