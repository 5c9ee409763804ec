"""Small file I/O shared by the agent's writers: an atomic replace that keeps a file's mode
and owner, and the ``key=value`` text codec of the state record and the utilization cache
(parsed without importing ``json``, which a monitor would otherwise pay for on every run)."""

from __future__ import annotations

import os

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}


_UNESCAPES = {"\\": "\\", "n": "\n", "r": "\r"}


def dump_fields(fields: dict[str, str]) -> bytes:
    """``key=value`` lines; keys are identifiers, values any text."""
    lines = []
    for key, value in fields.items():
        if "\\" in value or "\n" in value or "\r" in value:
            value = "".join(_ESCAPES.get(c, c) for c in value)
        lines.append(f"{key}={value}\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


def parse_fields(data: bytes) -> dict[str, str]:
    """The inverse of dump_fields; lines without "=" are ignored."""
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", "surrogateescape").split("\n"):
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if "\\" in value:
            out, i = [], 0
            while i < len(value):
                c = value[i]
                if c == "\\" and i + 1 < len(value):
                    out.append(_UNESCAPES.get(value[i + 1], value[i + 1]))
                    i += 2
                else:
                    out.append(c)
                    i += 1
            value = "".join(out)
        fields[key] = value
    return fields


def atomic_write(path: str, data: bytes, *, mode: int | None = None,
                 owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` with ``data`` atomically: a temp file in the same directory, fsync,
    optional mode/owner, rename. Readers see the old or the new content, never a mix."""
    import tempfile  # only writers need it: keep it off the monitor's import path

    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# Permission bits a file holding secrets never keeps: group and others.
SHARED_BITS = 0o077


def replace_file(path: str, data: bytes, *, private: bool = False) -> str:
    """Give a user's file new content without replacing the file: symlinks are followed to
    the real file, which is rewritten atomically beside itself (atomic_write) with its mode
    and owner kept; ``private`` (the content holds secrets) drops the group's and others'
    permissions. Returns the path written. OSError when it cannot be done."""
    real = os.path.realpath(path)
    st = os.stat(real)
    mode = st.st_mode & 0o7777
    if private:
        mode &= ~SHARED_BITS
    atomic_write(real, data, mode=mode, owner=(st.st_uid, st.st_gid))
    return real
