"""libvirt hook scripts that the tests control: a hook that sleeps on a given operation of a
given domain, as a slow production hook (storage or network set-up on "prepare") does.

libvirtd looks for /etc/libvirt/hooks/<driver> when it starts, so the session installs them
before its libvirtd and removes them after it. A hook does nothing unless the run directory
holds ``hooks/<domain>.<operation>`` with a number of seconds to sleep."""

from __future__ import annotations

from pathlib import Path

from .common import DEFAULT_RUN_DIR, HarnessError

HOOK_DIR = Path("/etc/libvirt/hooks")
DRIVERS = ("qemu", "lxc")
MARK = "# pyvirtualdomain test hook"


def control_dir(run_dir: Path = DEFAULT_RUN_DIR) -> Path:
    return run_dir / "hooks"


def _script(run_dir: Path) -> str:
    ctl = control_dir(run_dir)
    return (f"#!/bin/sh\n{MARK}\n# $1 domain, $2 operation; the domain XML comes on stdin\n"
            f'f="{ctl}/$1.$2"\n'
            'if [ -f "$f" ]; then sleep "$(cat "$f")"; fi\nexit 0\n')


def install(run_dir: Path = DEFAULT_RUN_DIR) -> None:
    """Install the hooks (before libvirtd starts). A hook that is not ours is never
    replaced: the tests that need one fail and say so."""
    HOOK_DIR.mkdir(parents=True, exist_ok=True)
    control_dir(run_dir).mkdir(parents=True, exist_ok=True)
    for driver in DRIVERS:
        path = HOOK_DIR / driver
        if path.exists() and MARK not in path.read_text(errors="replace"):
            continue
        tmp = path.with_suffix(".tmp")
        tmp.write_text(_script(run_dir))
        tmp.chmod(0o755)
        tmp.replace(path)


def remove(run_dir: Path = DEFAULT_RUN_DIR) -> None:
    for driver in DRIVERS:
        path = HOOK_DIR / driver
        if path.exists() and MARK in path.read_text(errors="replace"):
            path.unlink()
    ctl = control_dir(run_dir)
    if ctl.is_dir():
        for f in ctl.iterdir():
            f.unlink()
        ctl.rmdir()
    try:
        HOOK_DIR.rmdir()  # only if we left it empty
    except OSError:
        pass


def installed(driver: str = "qemu") -> bool:
    path = HOOK_DIR / driver
    return path.exists() and MARK in path.read_text(errors="replace")


def slow(domain: str, operation: str, seconds: float,
         run_dir: Path = DEFAULT_RUN_DIR) -> Path:
    """Make the hook sleep ``seconds`` on ``operation`` (prepare, start, started, stopped,
    release, ...) of ``domain``; returns the control file (remove it to stop)."""
    if not installed():
        raise HarnessError(f"{HOOK_DIR}/qemu is not the test hook (another hook is installed "
                           "on this machine): this test cannot slow libvirt down")
    path = control_dir(run_dir) / f"{domain}.{operation}"
    path.write_text(f"{seconds:g}\n")
    return path
