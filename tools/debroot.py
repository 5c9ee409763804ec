"""A second Debian release on this machine: a root made with debootstrap, entered in namespaces
of its own (``make check-trixie``; README: Supported platforms).

    debroot.py build ROOT --suite trixie
        debootstrap (minbase) from the Debian archive this machine's apt uses, once: a stamp in
        ROOT names the suite, the archive and this script's version of the recipe.
    debroot.py run ROOT [--network own|host] [--env K=V ...] -- COMMAND...
        COMMAND inside ROOT, in fresh mount, PID, UTS and IPC namespaces, and a fresh network
        namespace with only ``lo`` (``--network own``, the default; ``host`` keeps the
        machine's network, for apt and pip), the checkout bind-mounted at its own path.

Inside, ROOT's own directories replace the checkout's ``.venv`` and ``build`` (``--venv``,
``--build``): the root builds its own virtual environment and packages with its own Python and
tools, and never sees or touches the machine's. PID 1 of the namespace is a small shell that
forwards SIGTERM/SIGINT/SIGHUP to COMMAND and waits for it; when it exits the kernel kills
whatever is left in the PID namespace, and the mount and network namespaces go with their last
process. What cannot go with them, cgroups libvirt made in the machine's cgroup tree for
guests that were killed, is removed after the run when empty and new. So nothing is left
behind, also when COMMAND fails or this script gets SIGTERM (it asks COMMAND to stop, waits,
then kills the namespace).

Standard library only: this runs with the machine's python3 before any venv exists.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAMP = ".pyvd-debroot-stamp"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# Bound for COMMAND to stop after SIGTERM (a test session tears down clusters and guests).
STOP_GRACE_S = 300.0
HOSTNAME = "pyvd-debroot"
# Device nodes the root gets from the machine (when the machine has them): the basics, KVM,
# tun for guest NICs, vhost-net, fuse.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty", "kvm", "net/tun", "vhost-net",
           "fuse")
CGROUP_ROOT = Path("/sys/fs/cgroup")

# PID 1 of the new namespaces (the machine's bash; it sets up the mounts, then makes ROOT the
# namespace's root). Arguments: ROOT,
# NETWORK, CHECKOUT, GIT_COMMON_DIR ("" when inside the checkout), VENV, BUILD, then the
# environment ("K=V" words) up to "--", then COMMAND.
INNER = r"""
set -eu
R=$1 NET=$2 CHECKOUT=$3 GITDIR=$4 VENV=$5 BUILD=$6; shift 6
envs=()
while [ "$1" != -- ]; do envs+=("$1"); shift; done
shift
# The root is a mount point (code that reads mountinfo, e.g. libvirt, expects "/" there).
mount --bind "$R" "$R"
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
if [ "$NET" = own ]; then
  # A sysfs of this network namespace (its /sys/class/net), with the machine's cgroup tree.
  mount -t sysfs -o nosuid,nodev,noexec sysfs "$R/sys"
  mount --rbind /sys/fs/cgroup "$R/sys/fs/cgroup"
else
  mount --rbind /sys "$R/sys"
fi
mount -t tmpfs -o mode=755,nosuid tmpfs "$R/dev"
for d in DEVICES; do
  [ -e "/dev/$d" ] || continue
  mkdir -p "$(dirname "$R/dev/$d")"; touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"
done
mkdir -p "$R/dev/pts" "$R/dev/shm" "$R/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
mount -t mqueue -o nosuid,nodev,noexec mqueue "$R/dev/mqueue"
ln -s /proc/self/fd "$R/dev/fd"; ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$R/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"
mkdir -p "$R$CHECKOUT" "$VENV" "$BUILD" "$CHECKOUT/.venv" "$CHECKOUT/build"
mount --bind "$CHECKOUT" "$R$CHECKOUT"
mount --bind "$VENV" "$R$CHECKOUT/.venv"
mount --bind "$BUILD" "$R$CHECKOUT/build"
if [ -n "$GITDIR" ]; then
  # A git worktree's repository lives outside the checkout: readable, not writable.
  mkdir -p "$R$GITDIR"; mount --bind -o ro "$GITDIR" "$R$GITDIR"
fi
if [ "$NET" = host ]; then
  # Downloads (apt, pip) resolve names and trust certificates as this machine does (its CA
  # store may hold a proxy's certificate that the root's own bundle lacks).
  [ -e "$R/etc/resolv.conf" ] || touch "$R/etc/resolv.conf"
  mount --bind -o ro /etc/resolv.conf "$R/etc/resolv.conf"
  mount --bind -o ro /etc/ssl/certs "$R/etc/ssl/certs"
fi
hostname HOSTNAME
ip link set lo up
# The root becomes the mount namespace's root (pivot_root, then the machine's root detached),
# not just this process's (chroot): a process that enters this mount namespace (setns, as
# nsenter and libvirt's per-guest namespace helpers do) gets the namespace's root, which
# under chroot would be the machine's /.
cd "$R"
pivot_root . .
umount -l .
cd /
trap 'kill -TERM "$child" 2>/dev/null' TERM INT HUP
/usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 HOME=/root ${envs[@]+"${envs[@]}"} \
  /bin/sh -c 'cd "$0" && exec "$@"' "$CHECKOUT" "$@" <&0 &
child=$!
while :; do
  set +e; wait "$child"; rc=$?; set -e
  kill -0 "$child" 2>/dev/null || break
done
exit $rc
""".replace("DEVICES", " ".join(DEVICES)).replace("HOSTNAME", HOSTNAME)


def log(msg: str) -> None:
    print(f"debroot: {msg}", file=sys.stderr, flush=True)


def system_env() -> dict[str, str]:
    return {"PATH": SYSTEM_PATH, "LANG": "C"}


# -- the archive -----------------------------------------------------------------------------


def _apt_sources() -> list[tuple[str, list[str]]]:
    """(URI, suites) of every enabled ``deb`` entry of this machine's apt sources."""
    found: list[tuple[str, list[str]]] = []
    paths = [Path("/etc/apt/sources.list")]
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        paths += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources"))
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
                    if m:
                        fields[m.group(1).lower()] = m.group(2).strip()
                if "deb" in fields.get("types", "").split() and \
                        fields.get("enabled", "yes").lower() != "no":
                    for uri in fields.get("uris", "").split():
                        found.append((uri, fields.get("suites", "").split()))
        else:
            for line in text.splitlines():
                m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
                if m:
                    found.append((m.group(1), [m.group(2)]))
    return found


def debian_archive() -> tuple[str, str | None]:
    """The Debian archive and security archive URIs this machine's apt uses."""
    main = security = None
    for uri, suites in _apt_sources():
        if any(s.endswith("-security") for s in suites):
            security = security or uri
        elif uri.rstrip("/").endswith("/debian"):
            main = main or uri
    if main is None:
        raise SystemExit("debroot: no Debian archive (a URI ending in /debian) in "
                         "/etc/apt/sources.list or /etc/apt/sources.list.d")
    return main, security


def sources_for(suite: str, main: str, security: str | None) -> str:
    text = (f"Types: deb\nURIs: {main}\nSuites: {suite} {suite}-updates\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    if security:
        text += (f"\nTypes: deb\nURIs: {security}\nSuites: {suite}-security\n"
                 "Components: main\n"
                 "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    return text


# -- build -----------------------------------------------------------------------------------

# What the root gets from debootstrap; everything else comes from the project's `make deps`
# run inside it. git: the Makefile and tools/mkdist.py list the tree's files with it.
INCLUDE = ("make", "python3", "git", "ca-certificates", "debian-archive-keyring")
# Bump when the bootstrap recipe changes in a way that needs a new root.
RECIPE_VERSION = "1"


def stamp_text(suite: str, main: str, security: str | None) -> str:
    return (f"suite={suite}\narchive={main}\nsecurity={security or ''}\n"
            f"include={','.join(INCLUDE)}\nrecipe={RECIPE_VERSION}\n")


def build(root: Path, suite: str) -> int:
    main, security = debian_archive()
    want = stamp_text(suite, main, security)
    stamp = root / STAMP
    if stamp.is_file() and stamp.read_text() == want:
        log(f"{root}: {suite} root up to date")
        return 0
    if shutil.which("debootstrap", path=SYSTEM_PATH) is None:
        raise SystemExit("debroot: debootstrap is not installed (make deps-system installs it)")
    tmp = root.with_name(root.name + ".new")
    for old in (tmp, root):
        if old.exists():
            _remove_tree(old)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log(f"debootstrap --variant=minbase {suite} {tmp} {main}")
    r = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}",
                        suite, str(tmp), main], env=system_env(), check=False,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        print(r.stdout[-4000:], file=sys.stderr)
        raise SystemExit(f"debroot: debootstrap failed ({r.returncode})")
    (tmp / "etc/apt/sources.list").unlink(missing_ok=True)
    (tmp / "etc/apt/sources.list.d/debian.sources").write_text(
        sources_for(suite, main, security))
    # No package script starts a service in the root, ever (there is no init in it).
    policy = tmp / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# pyvirtualdomain debroot: no services in this root\nexit 101\n")
    policy.chmod(0o755)
    (tmp / "etc/hostname").write_text(HOSTNAME + "\n")
    (tmp / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME}\n"
                                   "::1 localhost ip6-localhost ip6-loopback\n")
    (tmp / STAMP).write_text(want)
    tmp.rename(root)
    log(f"{root}: {suite} root built in {time.monotonic() - started:.0f}s")
    return 0


def _remove_tree(path: Path) -> None:
    """rm -rf that refuses to cross into mounts (a root still entered by someone)."""
    r = subprocess.run(["rm", "-rf", "--one-file-system", str(path)], env=system_env(),
                       check=False, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"debroot: cannot remove {path}: {r.stderr.strip()}")


# -- run -------------------------------------------------------------------------------------


def _git_common_dir(checkout: Path) -> str:
    r = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--path-format=absolute",
                        "--git-common-dir"], capture_output=True, text=True, check=False,
                       env=system_env())
    if r.returncode != 0:
        return ""
    common = Path(r.stdout.strip()).resolve()
    return "" if common.is_relative_to(checkout) else str(common)


def _machine_cgroups() -> set[Path]:
    return {p for p in CGROUP_ROOT.glob("*/machine/*") if p.is_dir()}


def _remove_new_cgroups(before: set[Path]) -> list[str]:
    """Empty cgroups that appeared during the run below machine/ (what libvirt leaves for a
    guest killed with its daemon); deepest first. What could not be removed."""
    problems: list[str] = []
    for cg in sorted(_machine_cgroups() - before):
        for sub in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            try:
                sub.rmdir()
            except OSError as exc:
                problems.append(f"{sub}: {exc.strerror}")
        try:
            cg.rmdir()
            log(f"removed leftover cgroup {cg}")
        except OSError as exc:
            problems.append(f"{cg}: {exc.strerror}")
    return problems


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def run(root: Path, network: str, venv: Path, build_dir: Path, envs: list[str],
        command: list[str], clean_cgroups: bool = True) -> int:
    """COMMAND in the root. ``clean_cgroups``: remove the empty cgroups that appeared below
    machine/ meanwhile (libvirt's leftovers); only for a run that holds the machine's harness
    lock, since any pass starting guests meanwhile makes its own there."""
    if not (root / STAMP).is_file():
        raise SystemExit(f"debroot: {root} is not a built root (debroot.py build first)")
    checkout = REPO
    for e in envs:
        if "=" not in e:
            raise SystemExit(f"debroot: --env {e!r}: K=V expected")
    argv = ["unshare", "--mount", "--pid", "--uts", "--ipc", "--fork", "--kill-child",
            "--propagation", "private"] + (["--net"] if network == "own" else []) + [
        "/bin/bash", "-c", INNER, "debroot-init", str(root), network, str(checkout),
        _git_common_dir(checkout), str(venv), str(build_dir), *envs, "--", *command]
    cgroups_before = _machine_cgroups()
    proc = subprocess.Popen(argv, env=system_env())
    stopping: list[float] = []

    def on_signal(signum: int, _frame: object) -> None:
        # PID 1 of the namespace (unshare's child) forwards it to COMMAND.
        if not stopping:
            stopping.append(time.monotonic())
            log(f"signal {signum}: asking the command inside the root to stop")
        for pid in _children(proc.pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    while True:
        try:
            rc = proc.wait(timeout=1.0)
            break
        except subprocess.TimeoutExpired:
            if stopping and time.monotonic() - stopping[0] > STOP_GRACE_S:
                log(f"the command did not stop within {STOP_GRACE_S:.0f}s: killing its "
                    "PID namespace")
                for pid in _children(proc.pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
    problems = _remove_new_cgroups(cgroups_before) if clean_cgroups else []
    if problems:
        log("left behind: " + "; ".join(problems))
        return rc or 1
    if stopping:
        return rc or 143
    return rc


def main(argv: list[str]) -> int:
    if os.geteuid() != 0:
        raise SystemExit("debroot: run as root (debootstrap, namespaces, mounts)")
    p = argparse.ArgumentParser(prog="debroot.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("root", type=Path)
    b.add_argument("--suite", required=True)
    r = sub.add_parser("run")
    r.add_argument("root", type=Path)
    r.add_argument("--network", choices=("own", "host"), default="own")
    r.add_argument("--venv", type=Path, help="bound over the checkout's .venv inside")
    r.add_argument("--build", type=Path, help="bound over the checkout's build/ inside")
    r.add_argument("--env", action="append", default=[], metavar="K=V")
    r.add_argument("--no-daemons", action="store_true",
                   help="the command starts no libvirt guest: leave the machine's cgroups "
                        "alone (another pass may be making its own meanwhile)")
    # COMMAND follows "--", so that its own options are not taken for ours.
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    args = p.parse_args(argv)
    root = args.root.resolve()
    if args.cmd == "build":
        return build(root, args.suite)
    if not command:
        p.error("run: no command after --")
    venv = (args.venv or root.with_name(root.name + "-venv")).resolve()
    build_dir = (args.build or root.with_name(root.name + "-build")).resolve()
    return run(root, args.network, venv, build_dir, args.env, command,
               clean_cgroups=not args.no_daemons)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
