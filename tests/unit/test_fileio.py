"""The key=value codec; replacing a user's file."""

from __future__ import annotations

import os
import stat

from hypothesis import given
from hypothesis import strategies as st

from pyvirtualdomain import fileio
from pyvirtualdomain.fileio import replace_file

KEYS = st.from_regex(r"[a-z_]{1,12}", fullmatch=True)


@given(st.dictionaries(KEYS, st.text()))
def test_fields_round_trip_any_text(fields):
    assert fileio.parse_fields(fileio.dump_fields(fields)) == fields


def test_fields_are_one_line_each_and_readable():
    data = fileio.dump_fields({"name": "vm 1", "config": "/etc/x\nb\\c"})
    assert data == b"name=vm 1\nconfig=/etc/x\\nb\\\\c\n"


def test_replace_file_keeps_the_file_its_mode_owner_and_links(tmp_path):
    real = tmp_path / "real.xml"
    real.write_bytes(b"old")
    real.chmod(0o604)
    if os.geteuid() == 0:
        os.chown(real, 65534, 65534)
    link = tmp_path / "link.xml"
    link.symlink_to(real)
    written = replace_file(str(link), b"new")
    assert written == str(real)
    assert link.is_symlink() and real.read_bytes() == b"new"
    st = real.stat()
    assert stat.S_IMODE(st.st_mode) == 0o604
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.xml", "real.xml"]
