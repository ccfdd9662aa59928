"""splitwise-sim request traces (github.com/Mutinifni/splitwise-sim, ``traces/*.csv``): the
``splitwise-csv`` reader and the ``splitwise`` writer.

Reader: the columns are
``request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,token_size``,
as ``generate_trace.py`` writes them with pandas: ``arrival_timestamp`` is float64 seconds of
simulated time (a cumulative sum of exponential gaps, so the first request arrives after one
gap, not at 0), in full float repr (``0.017063564378759746``); the shipped toy
``traces/test_trace.csv`` writes whole seconds (``1``). ``request_type`` 2 is a generative LLM
request, the only kind the simulator runs. The four id columns go to ``extra`` as their exact
text, so the writer gives them back unchanged.

Writer: unified trace -> splitwise-sim request trace CSV with the same columns, in the layout
the trace came in. A trace read from a splitwise-sim file gets its id columns back from
``extra`` and its seconds in their own digits, so the file comes back byte for byte. Any other
trace gets ``request_id`` = the unified request_id, ``request_type`` 2 (generative LLM),
``application_id`` 0, ``batch_size`` 1 and ``arrival_us`` as seconds with 6 decimals: the
simulator's clock starts at 0, as the unified arrivals do, so nothing is shifted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..schema import TraceStream
from ..text import ReadContext
from ..text.csv import CsvBatch, report_rows, split_header
from ..text.csvwrite import Plan, counts, csv_field, native_plan, seconds, write_csv
from ..timing import TimeSemantics
from . import NativeFormat, Writer
from .vidur import FIXED6, read_seconds_csv

# --- reading -------------------------------------------------------------------------------------

ARRIVAL = "arrival_timestamp"
PROMPT = "prompt_size"
TOKENS = "token_size"
IDS = ("request_id", "request_type", "application_id", "batch_size")
COLUMNS = ("request_id", "request_type", "application_id", ARRIVAL, "batch_size", PROMPT, TOKENS)
LLM_REQUEST = "2"


def _check_request_type(ctx: ReadContext, b: CsvBatch) -> None:
    other = pc.not_equal(b.columns["request_type"], LLM_REQUEST)
    report_rows(ctx, b, other, "request_type", "request-type",
                "splitwise-sim runs only request_type 2 (generative LLM); kept in extra",
                level="warning")


class SplitwiseCSV(NativeFormat):
    """splitwise-sim simulator trace CSV."""

    name = "splitwise-csv"
    description = ("splitwise-sim trace CSV (request_id,request_type,application_id,"
                   "arrival_timestamp,batch_size,prompt_size,token_size)")
    time = TimeSemantics(
        kind="relative",
        native_format="arrival_timestamp: decimal seconds of simulated time (pandas float64 "
                      "repr, e.g. 0.017063564378759746)",
        resolution="as written (float64 seconds; arrival_us rounds to 1us)",
        origin="the simulation start (arrival_timestamp = 0), not the first request")

    def sniff(self, first_line: str) -> bool:
        return set(COLUMNS) <= set(split_header(first_line))

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        return read_seconds_csv(ctx, COLUMNS, arrival=ARRIVAL, inputs=PROMPT, outputs=TOKENS,
                                verbatim=IDS, check=_check_request_type)


FORMATS = (SplitwiseCSV(),)


# --- writing -------------------------------------------------------------------------------------

DEFAULTS = {"request_type": LLM_REQUEST, "application_id": "0", "batch_size": "1"}


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as a splitwise-sim trace CSV at ``dest``, atomically."""

    def plan_for(first: pa.RecordBatch | None) -> Plan:
        return (native_plan(stream.meta, ("splitwise-csv",))
                or Plan(list(COLUMNS), False, dict(FIXED6)))

    def column(name: str, batch: pa.RecordBatch, plan: Plan, kept: dict[str, pa.Array]
               ) -> pa.Array:
        if name == ARRIVAL:
            return seconds(batch, plan, kept, ARRIVAL, "splitwise-sim")
        if name == PROMPT:
            return counts(batch, "input_tokens", "splitwise-sim")
        if name == TOKENS:
            return counts(batch, "output_tokens", "splitwise-sim")
        if name == "request_id":
            default: pa.Array | str = pc.cast(batch.column("request_id"), pa.string())
        else:
            default = DEFAULTS.get(name, "")
        values = kept.get(name)
        if values is None:
            return pc.fill_null(pa.nulls(batch.num_rows, pa.string()), default) \
                if isinstance(default, str) else default
        return csv_field(pc.fill_null(values, default))

    return write_csv(stream, dest, plan_for, column)


WRITER = Writer("splitwise", ".csv", "splitwise-sim trace CSV (request_id,request_type,"
                "application_id,arrival_timestamp,batch_size,prompt_size,token_size), seconds",
                write)
