"""model/validate.py: the one checking layer of scripts, VM configs and state files.

Each converter's refusal is checked word for word, and the three readers are
shown to say the same thing about the same mistake (only where they say it differs).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from imemviz.io.state import StateError
from imemviz.io.state_fields import boolean as state_boolean
from imemviz.io.state_fields import enum as state_enum
from imemviz.io.state_fields import integer as state_integer
from imemviz.io.state_fields import key_path
from imemviz.model import validate as V
from imemviz.model.config import ConfigError, VMConfig
from imemviz.model.ops import OpError, parse_op
from imemviz.model.units import LEVEL_BY_NAME


def refusal(conv: Any, *args: Any) -> str:
    with pytest.raises(V.Invalid) as info:
        conv(*args)
    return str(info.value)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (5, "the integer 5"),
        (-(1 << 63), f"the integer {-(1 << 63)}"),
        (1 << 200, "the integer a 201-bit number"),
        (1.5, "the number 1.5"),
        ("2Q", 'the string "2Q"'),
        ("x" * 100, 'the string "' + "x" * 26 + "..."),
        ('a"b', r'the string "a\"b"'),
        ([1], "a list"),
        ({}, "an object"),
        (json.loads("[" * 70 + "]" * 70), "a list nested deeper than 64 levels"),
    ],
)
def test_json_type_names_a_value_as_json_spells_it(value: Any, name: str) -> None:
    assert V.json_type(value) == name


def test_integers() -> None:
    u32 = V.unsigned((1 << 32) - 1, "u32")
    assert (u32(7), u32("0x10"), u32("2K"), u32(-1)) == (7, 16, 2048, (1 << 32) - 1)
    assert (
        refusal(u32, 1 << 32)
        == "out of range for a u32 (0..0xffffffff, or -1 for all ones): 4294967296"
    )
    assert refusal(u32, True) == "expected an integer, got true"
    assert refusal(u32, "lots").startswith("bad integer 'lots'")
    byte = V.ranged(0, 255, "a byte")
    assert refusal(byte, 256) == "out of range for a byte (0..255): 256"
    assert V.integer(3) == 3
    assert refusal(V.integer, "3") == 'expected an integer, got the string "3"'
    assert refusal(V.integer, -2, 0, 10, "npages") == "npages must not be negative, got -2"
    assert refusal(V.integer, 0, 1, 10, "count") == "count must be at least 1, got 0"
    assert refusal(V.integer, 11, 0, 10) == "value 0xb is beyond the largest allowed, 0xa"
    assert refusal(V.integer, 11, 0, 10, "gfn", "the guest") == "gfn 0xb is beyond the guest"
    assert (V.hex_or_int("0x1f000", 1 << 40), V.hex_or_int(12, 99)) == (0x1F000, 12)
    assert refusal(V.hex_or_int, "zz", 9) == (
        'address: expected a hex string like "0x1000", got the string "zz"'
    )
    assert refusal(V.hex_or_int, 1.0, 9) == (
        'expected a hex string like "0x1000" (address), got the number 1.0'
    )
    assert V.count(4, 10) == 4
    assert refusal(V.count, 11, 10) == "count 11 is absurd (at most 10 here)"


def test_other_kinds() -> None:
    assert (V.boolean(True), V.optional_bool(None), V.string("s")) == (True, None, "s")
    assert refusal(V.boolean, 1) == "expected true or false, got the integer 1"
    assert refusal(V.optional_bool, "no") == 'expected true, false or null, got the string "no"'
    assert refusal(V.string, ["s"]) == "expected a string, got a list"
    assert V.choice("2M", LEVEL_BY_NAME) == 2
    assert V.choice(9, {0: "a", 9: "b"}) == "b"
    # True == 1 as a dict key: a boolean is still not an order.
    assert refusal(V.choice, True, {1: "a"}) == "expected one of 1, got true"
    assert refusal(V.choice, [1], {1: "a"}) == "expected one of 1, got a list"
    assert V.one_of("tdx", ("tdx", "snp")) == "tdx"
    assert (
        refusal(V.one_of, "sev", ("tdx", "snp")) == 'expected one of tdx, snp, got the string "sev"'
    )
    fl = V.flags({"A": 1, "B": 4}, V.unsigned(255, "u8"))
    assert (fl(["A", "B"]), fl(3), fl("0x2"), fl([])) == (5, 3, 2, 0)
    assert refusal(fl, ["C"]) == "unknown flag 'C' (known: A, B)"
    assert refusal(fl, [1]) == "flag names must be strings, got the integer 1"
    assert refusal(fl, "B") == 'flag names go in a list: ["B"] (or the integer 4)'
    assert refusal(fl, None) == "expected an integer or a list of flag names, got null"


def test_key_name_keeps_a_path_on_one_line() -> None:
    assert V.key_name("gpa") == "gpa"
    assert V.key_name("a\nb") == '"a\\nb"'
    assert V.key_name("é") == '"\\u00e9"'
    assert V.key_name("x-" * 50) == json.dumps("x-" * 20)
    assert key_path("$.vm", "type") == "$.vm.type"
    assert key_path("$.vm", "1x") == '$.vm["1x"]'


def test_the_three_readers_say_the_same_about_the_same_mistake() -> None:
    def op_says(d: dict[str, Any]) -> str:
        with pytest.raises(OpError) as info:
            parse_op(d)
        return info.value.message

    def config_says(d: dict[str, Any]) -> str:
        with pytest.raises(ConfigError) as info:
            VMConfig.from_dict(d)
        return info.value.message

    def state_says(conv: Any, *args: Any) -> str:
        with pytest.raises(StateError) as info:
            conv(*args)
        return str(info.value).removeprefix("$.x: ")

    not_int = "expected an integer, got a list"
    assert op_says({"op": "inspect", "gpa": []}) == not_int
    assert config_says({"type": "tdx", "gpaw": []}) == not_int
    assert state_says(state_integer, [], "$.x") == not_int
    not_bool = 'expected true or false, got the string "yes"'
    assert op_says({"op": "guest_access", "gpa": 0, "write": "yes"}) == not_bool
    assert state_says(state_boolean, "yes", "$.x") == not_bool
    not_level = 'expected one of 4K, 2M, got the string "1G"'
    assert config_says({"type": "tdx", "tdx_private_max_level": "1G"}) == not_level
    assert state_says(state_enum, "1G", "$.x", {"4K": 1, "2M": 2}) == not_level
    assert config_says({"type": "sev"}) == (
        'expected one of default, sw_protected, tdx, snp, got the string "sev"'
    )
    assert config_says([]) == "expected an object, got a list"
    assert config_says({"type": "tdx", "seed": None}) == "expected an integer, got null"
