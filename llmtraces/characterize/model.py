"""The result of :func:`llmtraces.stats`, as pydantic models: ``schemas/stats.schema.json`` is
generated from :class:`TraceStats` and ``--json`` prints one. Units are in the field names:
``_s`` seconds, ``_rps`` requests per second, lengths in tokens. A statistic that is
undefined for the trace (no timing, a constant column) is null, never NaN."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field

#: Version of the ``--json`` layout; bumped when a field changes meaning or goes away.
STATS_VERSION = "1"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Size(_Model):
    """How big the trace is and how long it lasts."""

    rows: int = Field(description="Requests in the trace.")
    timed_rows: int = Field(description="Rows with an arrival time (arrival_us not null).")
    distinct_arrivals: int = Field(description="Distinct arrival_us values.")
    first_arrival_s: float | None = Field(description="Earliest arrival, s after the origin.")
    last_arrival_s: float | None = Field(description="Latest arrival, s after the origin.")
    span_s: float | None = Field(description="last_arrival_s - first_arrival_s.")
    mean_rate_rps: float | None = Field(
        description="(timed_rows - 1) / span_s: the inverse of the mean inter-arrival time "
        "(BurstGPT's average RPS; llmtraces.mean_rate).")
    time_origin: str | None = Field(description="Wall-clock instant of arrival_us = 0 (UTC), "
                                    "where the trace has one.")


class RateSeries(_Model):
    """Requests per second in consecutive windows from the first arrival."""

    window_s: float = Field(description="Window length (--window-s).")
    rps: list[float] = Field(description="Requests per second in each window; the last one "
                             "may be partial (it ends at the last arrival).")
    peak_rps: float
    peak_to_mean: float = Field(description="Largest window count / mean window count.")


class Fit(_Model):
    """One law fitted by maximum likelihood to the inter-arrival gaps (location fixed at 0)."""

    shape: float | None = Field(description="Gamma or Weibull shape; null for the exponential.")
    scale_s: float = Field(description="Scale in seconds (the mean for the exponential).")
    ks_d: float = Field(description="Kolmogorov-Smirnov distance between the gaps' empirical "
                        "CDF and the fitted CDF (no p-value: the parameters were fitted).")


class GammaWindow(_Model):
    """BurstGPT's per-window Gamma: gaps starting in one window, fitted on their own."""

    start_s: float = Field(description="Window start, s after the first arrival.")
    requests: int = Field(description="Arrivals in the window.")
    gaps: int = Field(description="Gaps starting in the window.")
    shape: float | None = Field(description="Gamma shape alpha (null under 3 gaps).")
    scale_s: float | None = Field(description="Gamma scale 1/beta in seconds.")
    cv_fit: float | None = Field(description="1/sqrt(shape): the fitted law's CV.")
    cv: float | None = Field(description="std/mean of the window's gaps (measured CV).")


class Periodicity(_Model):
    """Arrivals by hour of day and weekday, where the clock time of arrivals is known."""

    zone: str = Field(description="Zone the hours are counted in: UTC for traces with "
                      "absolute time; the trace's zone for a relative trace whose origin is a "
                      "local midnight (BurstGPT: UTC+8).")
    days: int = Field(description="Calendar days the trace touches.")
    hour_of_day: list[int] = Field(description="Requests per hour of day, 0-23.")
    weekday: list[int] | None = Field(description="Requests per weekday, Monday first (null: "
                                      "the origin's calendar day is not published).")


class Arrivals(_Model):
    """Inter-arrival gaps between consecutive rows in file order."""

    gaps: int = Field(description="Consecutive gaps between timed rows (timed_rows - 1).")
    zero_gaps: int = Field(description="Gaps of 0 (equal arrival times), included above.")
    backward_gaps: int = Field(description="Negative gaps (rows out of time order).")
    mean_s: float | None
    std_s: float | None = Field(description="Population standard deviation.")
    cv: float | None = Field(description="std_s / mean_s over all gaps, zeros included.")
    fitted_gaps: int = Field(description="Gaps the fits used (>= 0; a 0 counts as half the "
                             "time resolution; at most 1,000,000, evenly strided).")
    gamma: Fit | None = None
    weibull: Fit | None = None
    exponential: Fit | None = None
    window_s: float = Field(description="Length of the per-window Gamma windows (BurstGPT: "
                            "1200 s).")
    windows: list[GammaWindow] = Field(default_factory=list)


class Zipf(_Model):
    """BurstGPT's Zipf: P(L = k) proportional to k^-exponent for lengths k in [k_min, k_max]
    (a power law in the length value, not in a rank), fitted by maximum likelihood."""

    exponent: float
    k_min: int
    k_max: int
    rows: int = Field(description="Lengths >= 1 fitted (0 has no power law).")
    ks_d: float = Field(description="Largest gap between the empirical and fitted CDFs.")


class Lengths(_Model):
    """Summary of one length column (tokens), null rows left out."""

    count: int
    nulls: int
    mean: float | None
    std: float | None = Field(description="Population standard deviation.")
    min: int | None
    p50: float | None = Field(description="Percentiles by linear interpolation (numpy's "
                              "default, as pandas describe()).")
    p90: float | None
    p99: float | None
    max: int | None
    zipf: Zipf | None = None


class LengthPair(_Model):
    """Input and output lengths and how they move together."""

    input: Lengths
    output: Lengths
    pearson: float | None = Field(description="Pearson r over rows with both lengths.")
    spearman: float | None = Field(description="Spearman rho (Pearson r of mid-ranks).")


class Failures(_Model):
    """Requests the source marks failed."""

    known: int = Field(description="Rows whose failed column is not null.")
    failed: int
    share: float | None = Field(description="failed / known.")
    window_s: float
    share_by_window: list[float | None] = Field(
        description="failed / known in each --window-s window (null: no known row).")


class Sessions(_Model):
    """Requests per session_id, and the time between a session's consecutive requests."""

    sessions: int
    requests: int = Field(description="Rows with a session_id.")
    share_single: float = Field(description="Share of sessions with one request.")
    median: float
    p75: float
    max: int
    gaps: int = Field(description="Gaps between consecutive requests of a session (file "
                      "order, timed rows).")
    gap_mean_s: float | None
    gap_median_s: float | None


class Images(_Model):
    """Images attached to requests (multimodal traces)."""

    rows: int = Field(description="Rows whose num_images is not null.")
    with_images: int
    share: float = Field(description="with_images / rows.")
    images: int
    mean_per_request: float | None = Field(description="Mean num_images of rows with images.")
    max: int


class CachePoint(_Model):
    """Prefix hits of an LRU cache of a given capacity."""

    capacity_blocks: int
    capacity_share: float = Field(description="Capacity / distinct blocks.")
    token_hit_ratio: float


class Prefix(_Model):
    """Prefix reuse from hash_ids: a request's hit is the longest prefix of its blocks already
    in the cache, in tokens min(k * block, input_tokens)."""

    requests: int = Field(description="Rows with hash_ids and a block size.")
    block_sizes: list[int] = Field(description="Distinct hash_block_size values.")
    blocks: int = Field(description="Blocks referenced in all (with repeats).")
    distinct_blocks: int
    input_tokens: int = Field(description="Sum of input_tokens of these rows.")
    hit_tokens: int = Field(description="Sum of hits with an infinite cache, file order.")
    token_hit_ratio: float | None = Field(
        description="token-weighted: hit_tokens / input_tokens (infinite cache).")
    request_mean_hit_ratio: float | None = Field(
        description="request-mean: mean over requests of hit / input_tokens (infinite cache; "
        "rows with 0 input left out).")
    lru: list[CachePoint] = Field(
        description="Token-weighted ratio of an LRU cache of each capacity (a request's blocks "
        "are used last to first, so a prefix outlives its tail).")


class TargetWindow(_Model):
    """One window of a trace synthesized from a workload model (ServeGen): what the model
    asked for against what the trace holds (docs/stats.md, "The CV check")."""

    start_s: float
    law: str = Field(description="Arrival law of the window: Gamma or Weibull.")
    shape: float | None
    rate_target: float = Field(description="Requests/s the model asks for.")
    rate: float = Field(description="Requests/s in the trace's window.")
    requests_target: int
    requests: int
    cv_target: float = Field(description="The model file's stated CV of inter-arrival gaps.")
    law_cv: float | None = Field(description="The law's own CV at the window's shape.")
    cv: float | None = Field(description="Population std / mean of the gaps inside the window.")
    cv_ratio: float | None = Field(description="cv / cv_target.")
    reached: bool = Field(description="cv >= 0.9 * cv_target.")


class TraceStats(_Model):
    """Everything ``llmtraces stats`` reports about one trace."""

    stats_version: str = STATS_VERSION
    trace: str = Field(description="source/trace, or what names the trace best.")
    source: str | None
    size: Size
    rate: RateSeries | None = None
    arrivals: Arrivals | None = None
    periodicity: Periodicity | None = None
    lengths: LengthPair
    failures: Failures | None = None
    models: dict[str, int] = Field(default_factory=dict, description="Rows per model.")
    services: dict[str, int] = Field(default_factory=dict, description="Rows per service.")
    sessions: Sessions | None = None
    images: Images | None = None
    prefix: Prefix | None = None
    model_windows: list[TargetWindow] | None = Field(
        default=None, description="Per-window targets of the workload model the trace was "
        "synthesized from (its window_targets metadata) against the trace; None otherwise.")

    def flat(self) -> dict[str, object]:
        """Every leaf as ``dotted.path -> value`` (what ``[published]`` keys name)."""
        out: dict[str, object] = {}

        def walk(prefix: str, value: object) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            else:
                out[prefix] = value
        walk("", self.model_dump(mode="json"))
        return out


def json_schema_text() -> str:
    """The exact text of ``schemas/stats.schema.json``, generated from :class:`TraceStats`."""
    schema = TraceStats.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://llmtraces.org/schemas/stats.schema.json"
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
