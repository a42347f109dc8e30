"""MCP tool names: valid OpenAI function names, unique, and mapped back by lookup."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from edge.mcp.names import VALID, ToolNames

names = st.text(min_size=0, max_size=80)


def test_plain_names_read_as_server_and_tool() -> None:
    table = ToolNames()
    assert table.name_for("time", "get_current_time") == "time__get_current_time"
    assert table.lookup("time__get_current_time") == ("time", "get_current_time")


def test_the_separator_inside_names_does_not_confuse_the_mapping() -> None:
    table = ToolNames()
    a = table.name_for("a__b", "c")
    b = table.name_for("a", "b__c")
    assert a != b
    assert table.lookup(a) == ("a__b", "c")
    assert table.lookup(b) == ("a", "b__c")


def test_invalid_or_long_names_are_cut_and_hashed() -> None:
    table = ToolNames()
    dotted = table.name_for("my.server", "do it!")
    assert VALID.match(dotted) and dotted.startswith("my_server__do_it__")
    long = table.name_for("s", "x" * 200)
    assert len(long) == 64 and VALID.match(long)
    assert table.lookup(long) == ("s", "x" * 200)


def test_builtin_names_are_never_handed_out() -> None:
    table = ToolNames(reserved=lambda name: name == "fs__read")
    name = table.name_for("fs", "read")
    assert name != "fs__read" and table.lookup(name) == ("fs", "read")


def test_names_are_stable_and_released_with_their_server() -> None:
    table = ToolNames()
    first = table.name_for("s", "t")
    assert table.name_for("s", "t") == first
    table.release_server("s")
    assert table.lookup(first) is None


@settings(max_examples=300)
@given(st.lists(st.tuples(names, names), min_size=1, max_size=40))
def test_any_pairs_map_to_valid_unique_names_and_back(pairs: list[tuple[str, str]]) -> None:
    table = ToolNames(reserved=lambda name: name in {"file_read", "terminal"})
    assigned = {pair: table.name_for(*pair) for pair in pairs}
    for pair, name in assigned.items():
        assert VALID.match(name), name
        assert name not in {"file_read", "terminal"}
        assert table.lookup(name) == pair
    assert len(set(assigned.values())) == len(assigned)
