"""Unit and property tests for gflow.parsing (rules and texts of gflow 0.4.13, cli.md §4)."""

import pytest
from hypothesis import given, settings, strategies as st

from gflow.errors import ParseError
from gflow.parsing import (
    format_duration, format_memory, is_shorthand, parse_array, parse_duration_spec,
    parse_gpu_spec, parse_id_list, parse_job_ref, parse_memory_mb, parse_param, parse_since,
    parse_time_limit, shell_escape, shell_join,
)

EMPTY = "cannot parse integer from empty string"
DIGIT = "invalid digit found in string"


def fails(fn, *args, match_text):
    with pytest.raises(ParseError) as info:
        fn(*args)
    assert str(info.value) == match_text
    assert "\n" not in str(info.value)
    return info.value


# --- time limit ------------------------------------------------------------------------

@pytest.mark.parametrize("text,secs", [
    ("30", 1800), ("1", 60), ("0", 0), ("120", 7200),
    ("0:10", 10), ("1:30", 90), ("30:45", 1845), ("0:99", 99),
    ("2:30:45", 9045), ("1:00:00", 3600), ("25:00:00", 90000), ("+1", 60),
])
def test_time_limit_good(text, secs):
    assert parse_time_limit(text) == secs


@pytest.mark.parametrize("text,message", [
    ("abc", f"Invalid time format. Expected number of minutes: {DIGIT}"),
    ("", f"Invalid time format. Expected number of minutes: {EMPTY}"),
    (" 30", f"Invalid time format. Expected number of minutes: {DIGIT}"),
    ("-5", f"Invalid time format. Expected number of minutes: {DIGIT}"),
    ("1.5", f"Invalid time format. Expected number of minutes: {DIGIT}"),
    ("x:10", f"Invalid minutes in MM:SS format: {DIGIT}"),
    ("1:abc", f"Invalid seconds in MM:SS format: {DIGIT}"),
    ("1:", f"Invalid seconds in MM:SS format: {EMPTY}"),
    ("h:0:0", f"Invalid hours in HH:MM:SS format: {DIGIT}"),
    ("1::0", f"Invalid minutes in HH:MM:SS format: {EMPTY}"),
    ("1:0:s", f"Invalid seconds in HH:MM:SS format: {DIGIT}"),
    ("1:2:3:4", "Invalid time format. Expected formats: HH:MM:SS, MM:SS, or MM"),
    ("99999999999999999999", "Invalid time format. Expected number of minutes: "
                             "number too large to fit in target type"),
])
def test_time_limit_bad(text, message):
    fails(parse_time_limit, text, match_text=message)


def test_parse_error_keeps_context_and_cause_apart():
    err = fails(parse_time_limit, "abc",
                match_text=f"Invalid time format. Expected number of minutes: {DIGIT}")
    assert err.context == "Invalid time format. Expected number of minutes"
    assert err.cause == DIGIT
    err = fails(parse_time_limit, "1:2:3:4",
                match_text="Invalid time format. Expected formats: HH:MM:SS, MM:SS, or MM")
    assert err.cause is None


@pytest.mark.parametrize("secs,text", [
    (0, "00:00:00"), (59, "00:00:59"), (61.9, "00:01:01"), (3600, "01:00:00"),
    (90000, "25:00:00"), (360000, "100:00:00"), (-5, "00:00:00"), (float("nan"), "00:00:00"),
])
def test_format_duration(secs, text):
    assert format_duration(secs) == text


@given(st.integers(min_value=0, max_value=10**7))
def test_format_duration_round_trips(secs):
    assert parse_time_limit(format_duration(secs)) == secs


@given(st.integers(0, 10**6), st.integers(0, 10**4), st.integers(0, 10**4))
def test_time_limit_three_parts(h, m, s):
    assert parse_time_limit(f"{h}:{m}:{s}") == h * 3600 + m * 60 + s


# --- memory ----------------------------------------------------------------------------

@pytest.mark.parametrize("text,mb", [
    ("512", 512), ("1024M", 1024), ("100m", 100), ("2G", 2048), ("2g", 2048),
    ("  4G  ", 4096), (" 512M ", 512), ("3 G", 3072), ("0", 0),
])
def test_memory_good(text, mb):
    assert parse_memory_mb(text) == mb


@pytest.mark.parametrize("text,message", [
    ("", "Memory limit cannot be empty"),
    ("   ", "Memory limit cannot be empty"),
    ("abc", f"Invalid memory format. Expected formats: 100G, 1024M, or 100 (MB): {DIGIT}"),
    ("100K", f"Invalid memory format. Expected formats: 100G, 1024M, or 100 (MB): {DIGIT}"),
    ("2GB", f"Invalid memory format. Expected formats: 100G, 1024M, or 100 (MB): {DIGIT}"),
    ("1.5G", f"Invalid memory value in GB format: {DIGIT}"),
    ("G", f"Invalid memory value in GB format: {EMPTY}"),
    ("xM", f"Invalid memory value in MB format: {DIGIT}"),
    ("-1", f"Invalid memory format. Expected formats: 100G, 1024M, or 100 (MB): {DIGIT}"),
])
def test_memory_bad(text, message):
    fails(parse_memory_mb, text, match_text=message)


@pytest.mark.parametrize("mb,text", [
    (512, "512M"), (1000, "1000M"), (1023, "1023M"), (1024, "1G"), (2048, "2G"),
    (2560, "2.5G"), (4096, "4G"), (1034, "1G"), (2047, "2.0G"), (1536, "1.5G"),
])
def test_format_memory(mb, text):
    assert format_memory(mb) == text


@given(st.integers(0, 10**9))
def test_memory_suffixes_agree(n):
    assert parse_memory_mb(f"{n}G") == parse_memory_mb(f"{n * 1024}M") == parse_memory_mb(str(n * 1024))


# --- id lists and GPU specs ------------------------------------------------------------

@pytest.mark.parametrize("text,ids", [
    ("1", [1]), ("1,2,3", [1, 2, 3]), ("1-3", [1, 2, 3]), ("1-3,5", [1, 2, 3, 5]),
    ("3,1,1", [1, 3]), (" 1 - 2 ", [1, 2]), ("1, 2", [1, 2]), ("0-2,1-3", [0, 1, 2, 3]),
    ("  0  ", [0]), ("5-5", [5]), ("+7", [7]),
])
def test_id_list_good(text, ids):
    assert parse_id_list(text) == ids


@pytest.mark.parametrize("text,message", [
    ("", "Invalid job ID or range: : Not a number: "),
    ("  ", "Invalid job ID or range:   : Not a number: "),
    ("abc", "Invalid job ID or range: abc: Not a number: abc"),
    ("@", "Invalid job ID or range: @: Not a number: @"),
    ("3-1", "Invalid job ID or range: 3-1: Start of the range cannot be bigger than the end: 3-1"),
    ("1,x", "Invalid job ID or range: 1,x: Not a number: x"),
    ("1,,2", "Invalid job ID or range: 1,,2: Not a number: "),
    ("1 - x", "Invalid job ID or range: 1 - x: Not a number:  x"),
    ("-1", "Invalid job ID or range: -1: Not a number: -1"),
    ("1-2-3", "Invalid job ID or range: 1-2-3: "
              "Start of the range cannot be bigger than the end: 1-2-3"),
    ("1-2-3-4-5", "Invalid job ID or range: 1-2-3-4-5: Invalid range syntax: 1-2-3-4-5"),
    ("0..2", "Invalid job ID or range: 0..2: Not a number: 0..2"),
    ("4294967296", "Invalid job ID or range: 4294967296: Not a number: 4294967296"),
    ("0-4294967295", "Invalid job ID or range: 0-4294967295: "
                     "Range too large: 0-4294967295 (max 100000 values)"),
])
def test_id_list_bad(text, message):
    fails(parse_id_list, text, match_text=message)


@pytest.mark.parametrize("text,ids", [
    ("0", [0]), ("0,2,4", [0, 2, 4]), ("0-3", [0, 1, 2, 3]), ("0-1,3,5-6", [0, 1, 3, 5, 6]),
])
def test_gpu_spec_good(text, ids):
    assert parse_gpu_spec(text) == ids


@pytest.mark.parametrize("text,message", [
    ("x", "Invalid GPU index or range: x: Not a number: x"),
    ("all", "Invalid GPU index or range: all: Not a number: all"),
    ("3-1", "Invalid GPU index or range: 3-1: Start of the range cannot be bigger than the end: 3-1"),
])
def test_gpu_spec_bad(text, message):
    fails(parse_gpu_spec, text, match_text=message)


def _render_ids(draw_ranges):
    parts = []
    for a, length, spaced in draw_ranges:
        if length == 0:
            parts.append(f" {a} " if spaced else str(a))
        else:
            parts.append(f"{a} - {a + length}" if spaced else f"{a}-{a + length}")
    return ",".join(parts)


@given(st.lists(st.tuples(st.integers(0, 2**32 - 40), st.integers(0, 30), st.booleans()),
                min_size=1, max_size=20))
def test_id_list_round_trip(items):
    expected = sorted({n for a, length, _ in items for n in range(a, a + length + 1)})
    assert parse_id_list(_render_ids(items)) == expected
    assert parse_gpu_spec(_render_ids(items)) == expected


@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=50))
def test_id_list_plain_numbers(ids):
    assert parse_id_list(",".join(map(str, ids))) == sorted(set(ids))


# --- job references --------------------------------------------------------------------

@pytest.mark.parametrize("text,ref", [
    ("12", 12), (" 12 ", 12), ("@", "@"), (" @ ", "@"), ("@~1", "@~1"), ("@~25", "@~25"),
    ("0", 0), ("4294967295", 4294967295),
])
def test_job_ref_good(text, ref):
    assert parse_job_ref(text) == ref


@pytest.mark.parametrize("text,message", [
    ("abc", "Invalid job ID: abc"), ("", "Invalid job ID: "), ("-1", "Invalid job ID: -1"),
    ("4294967296", "Invalid job ID: 4294967296"), ("@~0", "Invalid job ID: @~0"),
    ("@~", "Invalid job ID: @~"), ("@~x", "Invalid job ID: @~x"), ("@x", "Invalid job ID: @x"),
    ("@~-1", "Invalid job ID: @~-1"), ("1,2", "Invalid job ID: 1,2"),
])
def test_job_ref_bad(text, message):
    fails(parse_job_ref, text, match_text=message)


@pytest.mark.parametrize("text,expected", [
    ("@", True), ("@~1", True), ("@~10", True), (" @~2 ", True), ("@~0", False), ("@~00", False),
    ("@~", False), ("@x", False), ("1", False), ("", False), ("@~1x", False),
])
def test_is_shorthand(text, expected):
    assert is_shorthand(text) is expected


# --- --since ---------------------------------------------------------------------------

NOW = 1_700_000_123.75   # 2023-11-14 22:15:23 UTC
MIDNIGHT = 1_699_920_000


@pytest.mark.parametrize("text,expected", [
    ("1h", 1_700_000_123 - 3600), ("24h", 1_700_000_123 - 86400), ("0h", 1_700_000_123),
    ("2d", 1_700_000_123 - 2 * 86400), ("3w", 1_700_000_123 - 3 * 604800),
    (" 1H ", 1_700_000_123 - 3600), ("today", MIDNIGHT), ("TODAY", MIDNIGHT),
    ("  yesterday ", MIDNIGHT - 86400), ("1704067200", 1704067200), ("0", 0), ("-5", -5),
])
def test_since_good(text, expected):
    assert parse_since(text, NOW) == expected


GENERIC = ("Invalid time format. Expected formats: '1h', '2d', '3w', 'today', 'yesterday', "
           "or Unix timestamp")


@pytest.mark.parametrize("text,message", [
    ("", GENERIC), ("abc", GENERIC), ("1x", GENERIC), ("tomorro", GENERIC),
    ("tomorrow", f"Invalid weeks format: {DIGIT}"),   # ends in "w", as in 0.4.13
    ("2024-01-10T00:00:00Z", GENERIC), ("1 hour", GENERIC),
    ("1.5h", f"Invalid hours format: {DIGIT}"), ("-1h", f"Invalid hours format: {DIGIT}"),
    ("h", f"Invalid hours format: {EMPTY}"), ("xd", f"Invalid days format: {DIGIT}"),
    ("ahead", f"Invalid days format: {DIGIT}"), ("1.0w", f"Invalid weeks format: {DIGIT}"),
    ("100000000h", "Failed to convert to Unix timestamp: second time provided was later than self"),
])
def test_since_bad(text, message):
    fails(parse_since, text, NOW, match_text=message)


# --- --array ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [("1-10", (1, 10)), ("0-0", (0, 0)), ("5-5", (5, 5)),
                                           ("1-2-3", None)])
def test_array(text, expected):
    if expected is None:
        fails(parse_array, text, match_text=f"Invalid array end index: {DIGIT}")
    else:
        assert parse_array(text) == expected


@pytest.mark.parametrize("text,message", [
    ("abc", "Invalid array format. Expected format like '1-10'."),
    ("5", "Invalid array format. Expected format like '1-10'."),
    (" 1-2", f"Invalid array start index: {DIGIT}"),
    ("-2", f"Invalid array start index: {EMPTY}"),
    ("1-", f"Invalid array end index: {EMPTY}"),
    ("1-x", f"Invalid array end index: {DIGIT}"),
    ("5-1", "Array start index cannot be greater than end index"),
])
def test_array_bad(text, message):
    fails(parse_array, text, match_text=message)


# --- --param ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("lr=0.1,0.01", ("lr", ["0.1", "0.01"])),
    (" lr = 0.1 , ,0.01, ", ("lr", ["0.1", "0.01"])),
    ("x=0:1:0.25", ("x", ["0", "0.25", "0.50", "0.75", "1"])),
    ("x=0.1:0.3:0.1", ("x", ["0.1", "0.2", "0.3"])),
    ("x=1:3", ("x", ["1", "2", "3"])),
    ("x=3:1", ("x", ["3", "2", "1"])),
    ("x=1e1:12", ("x", ["10", "11", "12"])),
    ("x=1:2:3:4", ("x", ["1:2:3:4"])),
    ("x=10:12,13", ("x", ["10:12", "13"])),
    ("x=0:10:2", ("x", ["0", "2", "4", "6", "8", "10"])),
    ("x= 1 : 2 ", ("x", ["1", "2"])),
    ("x=1:0:-0.5", ("x", ["1", "0.5", "0"])),
    ("x=0.5:2.5", ("x", ["0.5", "1.5", "2.5"])),
    ("x=0:0.3:0.1", ("x", ["0", "0.1", "0.2", "0.3"])),
    ("x=a=b", ("x", ["a=b"])),
    ("x=5:5", ("x", ["5"])),
])
def test_param_good(text, expected):
    assert parse_param(text) == expected


@pytest.mark.parametrize("text,message", [
    ("lr", "Invalid param format. Expected 'name=val1,val2,...'"),
    ("=1,2", "Parameter name cannot be empty"),
    ("  =1", "Parameter name cannot be empty"),
    ("x=", "Parameter must have at least one value"),
    ("x= , ,", "Parameter must have at least one value"),
    ("x=a:b", "invalid float literal"),
    ("x=1_0:2", "invalid float literal"),
    ("x=:1", "cannot parse float from empty string"),
    ("x=1:2:0", "Step cannot be zero"),
    ("x=1:5:-1", "Step direction doesn't match start/stop"),
    ("x=5:1:1", "Step direction doesn't match start/stop"),
    ("x=0:10000", "Range too large (max 10000 values)"),
    ("x=0:1:inf", None),
])
def test_param_bad(text, message):
    if message is None:      # 0 + inf*0 is NaN in Rust as well: one value "NaN"
        assert parse_param(text) == ("x", ["NaN"])
    else:
        fails(parse_param, text, match_text=message)


def test_param_range_limit_is_inclusive():
    assert len(parse_param("x=1:10000")[1]) == 10000


# --- shell escaping --------------------------------------------------------------------

def test_shell_join_observed_transcript():
    words = ["echo", "it's", "a!b", "x:y", "a@b", "a%b", "~", "*", "a=b", "a,b", "a.b", "a+b",
             "a-b", "a_b", "a/b", "é", "{lr}", "[x]", "a;b", "a|b", "$X", "tab\tx"]
    assert shell_join(words) == (
        "echo 'it'\\''s' 'a'\\!'b' 'x:y' 'a@b' 'a%b' '~' '*' a=b a,b a.b a+b a-b a_b a/b 'é' "
        "'{lr}' '[x]' 'a;b' 'a|b' '$X' 'tab\tx'")


@pytest.mark.parametrize("word,escaped", [
    ("", "''"), ("plain", "plain"), ("a b", "'a b'"), ("echo a && echo b", "'echo a && echo b'"),
    ("'", "''\\'''"), ("!", "''\\!''"),
])
def test_shell_escape(word, escaped):
    assert shell_escape(word) == escaped


# --- reservation durations -------------------------------------------------------------

@pytest.mark.parametrize("text,secs", [
    ("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("2h", 7200), ("2h30m", 9000),
    ("90m", 5400), ("1H30M", 5400), ("30m1h", 5400),
])
def test_duration_good(text, secs):
    assert parse_duration_spec(text) == secs


@pytest.mark.parametrize("text,message", [
    ("", "Duration must be greater than 0"),
    ("0h", "Duration must be greater than 0"),
    ("90", "Duration must end with a unit (h or m)"),
    ("1h30", "Duration must end with a unit (h or m)"),
    ("2d", "Invalid character in duration: d"),
    ("1h 30m", "Invalid character in duration:  "),
    ("30s", "Seconds are not allowed in reservation duration. Use hours (h) or minutes (m) only."),
    ("1h30m45s", "Seconds are not allowed in reservation duration. Use hours (h) or minutes (m) only."),
    ("45m", "Reservation duration must be a multiple of 30 minutes (e.g., 30m, 1h, 1h30m, 2h). Got: 45m"),
    ("1h15m", "Reservation duration must be a multiple of 30 minutes (e.g., 30m, 1h, 1h30m, 2h). Got: 1h15m"),
    ("h", f"Invalid number before 'h': {EMPTY}"),
    ("1hm", f"Invalid number before 'm': {EMPTY}"),
])
def test_duration_bad(text, message):
    fails(parse_duration_spec, text, match_text=message)


def test_duration_without_half_hour_rule():
    assert parse_duration_spec("45m", half_hours=False) == 2700


@given(st.integers(0, 1000), st.integers(0, 1000))
def test_duration_round_trip(h, m):
    m = m * 30
    if h == 0 and m == 0:
        return
    assert parse_duration_spec(f"{h}h{m}m") == h * 3600 + m * 60


# --- robustness: nothing but ParseError, ever ------------------------------------------

_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789:-,@~ .eEhdwmMgGsSx=+_infa\t", max_size=25),
)


@settings(max_examples=150, deadline=None)
@given(_TEXT)
def test_parsers_raise_only_parse_error(text):
    for fn in (parse_time_limit, parse_memory_mb, parse_id_list, parse_gpu_spec, parse_job_ref,
               parse_array, parse_param, parse_duration_spec, lambda t: parse_since(t, NOW),
               lambda t: parse_param("x=" + t)):
        try:
            fn(text)
        except ParseError as e:
            assert "\n" not in str(e) or "\n" in text
    assert isinstance(shell_escape(text), str)
    assert isinstance(is_shorthand(text), bool)
