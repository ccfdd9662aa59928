"""splitwise-sim request traces (github.com/Mutinifni/splitwise-sim, ``traces/*.csv``).

``request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,token_size``,
as ``generate_trace.py`` writes them with pandas: ``arrival_timestamp`` is float64 seconds of
simulated time (a cumulative sum of exponential gaps, so the first request arrives after one
gap, not at 0), in full float repr (``0.017063564378759746``); the shipped toy
``traces/test_trace.csv`` writes whole seconds (``1``). ``request_type`` 2 is a generative LLM
request, the only kind the simulator runs. The four id columns go to ``extra`` as their exact
text, so the writer gives them back unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ..registry import TimeSemantics
from . import NativeFormat, ReadContext
from ._csv import CsvBatch, report_rows, split_header
from .vidur import read_seconds_csv

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
