"""The key=value codec (and atomic write)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pyvirtualdomain import fileio

KEYS = st.from_regex(r"[a-z_]{1,12}", fullmatch=True)


@given(st.dictionaries(KEYS, st.text()))
def test_fields_round_trip_any_text(fields):
    assert fileio.parse_fields(fileio.dump_fields(fields)) == fields


def test_fields_are_one_line_each_and_readable():
    data = fileio.dump_fields({"name": "vm 1", "config": "/etc/x\nb\\c"})
    assert data == b"name=vm 1\nconfig=/etc/x\\nb\\\\c\n"
