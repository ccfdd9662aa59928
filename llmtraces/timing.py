"""What a trace's timestamps mean (:class:`TimeSemantics`): unit, zone and origin.

It sits beside :mod:`llmtraces.schema` but apart from it, free of pyarrow, so that the registry
(and ``llmtraces list`` / ``info``) load without the columnar stack.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TimeSemantics(BaseModel):
    """What the native timestamps mean: the unit, zone and origin converters rely on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["absolute", "relative", "none"] = Field(
        description="absolute: wall-clock instants; relative: offsets from a trace start; "
        "none: no timing.")
    native_format: str = Field(description="How the timestamp column is written.")
    zone: str | None = Field(default=None, description="Time zone of the wall-clock values.")
    zone_assumed: bool = Field(
        default=False, description="True when the zone is inferred, not stated upstream.")
    resolution: str = Field(description="Finest step of the native values, e.g. '100ns', '1s'.")
    origin: str = Field(description="What arrival_us = 0 is in the converted trace.")
