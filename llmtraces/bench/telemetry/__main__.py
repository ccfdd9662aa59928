"""``python -m llmtraces.bench.telemetry CONFIG_JSON``: the telemetry process (see .sampler)."""

from __future__ import annotations

import sys

from .sampler import main

sys.exit(main())
