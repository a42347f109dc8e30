from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge.protocol import MAX_OUTPUT_CHARS, encode, tool_response, truncate_result
from edge.protocol.results import truncation_marker


def test_short_output_is_left_alone() -> None:
    result = {"output": "hi", "exit_code": 0}
    assert truncate_result(result) is result


def test_long_output_is_cut_and_marked_in_the_text_too() -> None:
    result = truncate_result({"output": "x" * 60_000, "exit_code": 0})
    marker = "\n… [truncated: 60000 characters in all]"
    assert result == {
        "output": "x" * (MAX_OUTPUT_CHARS - len(marker)) + marker,
        "exit_code": 0,
        "truncated": True,
        "original_length": 60_000,
    }
    assert len(result["output"]) == MAX_OUTPUT_CHARS  # the marker counts inside the limit


def test_long_error_is_cut_too() -> None:
    result = truncate_result({"error": "e" * 50_001})
    assert len(result["error"]) == MAX_OUTPUT_CHARS
    assert result["error"].endswith("[truncated: 50001 characters in all]")
    assert result["truncated"] is True


def test_an_output_of_exactly_the_limit_is_not_cut() -> None:
    result = {"output": "y" * MAX_OUTPUT_CHARS}
    assert truncate_result(result) is result


@given(st.text(max_size=300), st.integers(min_value=1, max_value=200))
def test_truncation_never_exceeds_the_limit(text: str, limit: int) -> None:
    result = truncate_result({"output": text}, limit)
    assert len(result["output"]) <= limit
    assert result.get("truncated", False) == (len(text) > limit)
    if len(text) <= limit:
        assert result["output"] == text
        return
    marker = truncation_marker(len(text))
    if len(marker) < limit:  # room for the marker: the text's head, then the marker
        head = result["output"].removesuffix(marker)
        assert head != result["output"] and text.startswith(head)
    else:
        assert text.startswith(result["output"])


def test_response_frame_shape() -> None:
    assert encode(tool_response(3, {"output": "é"})) == '{"jsonrpc":"2.0","id":3,"result":{"output":"é"}}'
