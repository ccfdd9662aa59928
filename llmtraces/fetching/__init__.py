"""Getting a source's native bytes into the cache, verified: downloads with resume and retries,
the Zenodo/Drive/Hub backends, discovered file lists, archives, checksums and re-pinning.
"""
