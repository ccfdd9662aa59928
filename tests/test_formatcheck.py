"""The shared format-test helper fails when a file is not what a test says it is."""

from __future__ import annotations

from pathlib import Path

import pytest
from formatcheck import check_format

from conftest import FIXTURES

SYNTHETIC = FIXTURES / "mooncake" / "synthetic_trace.jsonl"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rows": 3992}, "expected 3992 rows"),
    ({"rows": 3993, "reader": "bailian-jsonl"}, "read as mooncake-jsonl"),
    ({"rows": 3993, "first": {"input_tokens": 1}}, "row 0"),
    ({"rows": 3993, "last": {"output_tokens": 1}}, "row 3992"),
    ({"rows": 3993, "roundtrip": "bailian"}, "does not give the file back"),
])
def test_wrong_expectations_fail(kwargs: dict, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_format(SYNTHETIC, **kwargs)


def test_right_expectations_return_the_table(tmp_path: Path) -> None:
    table = check_format(SYNTHETIC, rows=3993, reader="mooncake-jsonl",
                         first={"request_id": 0}, last={"source_row": 3992},
                         roundtrip="mooncake")
    assert table.num_rows == 3993 and "hash_ids" in table.column_names
