from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge.protocol import MAX_OUTPUT_CHARS, encode, tool_response, truncate_result


def test_short_output_is_left_alone() -> None:
    result = {"output": "hi", "exit_code": 0}
    assert truncate_result(result) is result


def test_long_output_is_cut_and_marked() -> None:
    result = truncate_result({"output": "x" * 60_000, "exit_code": 0})
    assert result == {
        "output": "x" * MAX_OUTPUT_CHARS,
        "exit_code": 0,
        "truncated": True,
        "original_length": 60_000,
    }


def test_long_error_is_cut_too() -> None:
    result = truncate_result({"error": "e" * 50_001})
    assert len(result["error"]) == MAX_OUTPUT_CHARS
    assert result["truncated"] is True


@given(st.text(max_size=300), st.integers(min_value=1, max_value=200))
def test_truncation_never_exceeds_the_limit(text: str, limit: int) -> None:
    result = truncate_result({"output": text}, limit)
    assert len(result["output"]) <= limit
    assert result.get("truncated", False) == (len(text) > limit)
    assert text.startswith(result["output"])


def test_response_frame_shape() -> None:
    assert encode(tool_response(3, {"output": "é"})) == '{"jsonrpc":"2.0","id":3,"result":{"output":"é"}}'
