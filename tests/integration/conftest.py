"""Fixtures for integration tests: a real libvirtd, tiny real guests, the agent as a process.

The session starts one libvirtd (stopped again by its pid at the end, whatever happened);
each test gets guests with unique names, and every domain a test created is removed by name
in its teardown (its qemu killed by pid as the last resort)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

from tests.harness import (
    GuestArtifacts,
    GuestNetwork,
    GuestOptions,
    GuestResource,
    HarnessError,
    HostLock,
    Libvirtd,
    SmallFilesystem,
    build_artifacts,
    detect_virt_type,
    hooks,
    kill_qemu,
    new_guest_resource,
    remove_domain,
)

# Names of every domain created in this session, removed again before libvirtd stops.
_CREATED: set[str] = set()

MakeGuest = Callable[..., GuestResource]


def _require_environment() -> None:
    if os.geteuid() != 0:
        pytest.skip("integration tests run libvirtd and qemu as root")
    missing = [p for p in ("libvirtd", "virtlogd", "qemu-system-x86_64") if not shutil.which(
        p, path="/usr/sbin:/usr/bin:/sbin:/bin")]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (make deps-system)")


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def libvirtd() -> Iterator[Libvirtd]:
    _require_environment()
    lock = HostLock()
    lock.acquire()
    daemon = Libvirtd()
    # A CI job killed by SIGTERM should still stop the daemons and guests: make SIGTERM
    # unwind like Ctrl-C, through the fixtures' teardown.
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        hooks.install()  # libvirtd looks for its hook scripts when it starts
        daemon.start()  # stops what it started when it fails
    except BaseException:
        hooks.remove()
        signal.signal(signal.SIGTERM, previous)
        lock.release()
        raise
    try:
        yield daemon
    finally:
        try:
            daemon.ensure_running()
            for name in sorted(_CREATED):
                remove_domain(name)
        finally:
            for name in sorted(_CREATED):
                kill_qemu(name)
            daemon.stop()
            hooks.remove()
            signal.signal(signal.SIGTERM, previous)
            lock.release()


@pytest.fixture(scope="session")
def artifacts() -> GuestArtifacts:
    return build_artifacts()


@pytest.fixture(scope="session")
def virt_type(libvirtd: Libvirtd, artifacts: GuestArtifacts) -> str:
    return detect_virt_type(artifacts)


def _unique_name(test_name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9]+", "-", test_name.removeprefix("test_")).strip("-")[:28]
    return f"pyvd-{stem}-{secrets.token_hex(3)}"


@pytest.fixture
def make_guest(request: pytest.FixtureRequest, tmp_path: Path, libvirtd: Libvirtd,
               artifacts: GuestArtifacts, virt_type: str) -> Iterator[MakeGuest]:
    """Factory: ``make_guest("graceful"|"ignore")`` writes a uniquely named guest XML file
    (console log beside it) in tmp_path and returns its GuestResource. Nothing is started.
    ``options=GuestOptions(agent=True, ...)`` gives it a guest agent, watchdog, disk, ..."""
    created: list[GuestResource] = []

    def make(mode: str = "graceful", uuid: str | None = None,
             options: GuestOptions | None = None) -> GuestResource:
        guest = new_guest_resource(tmp_path, _unique_name(request.node.name), mode, artifacts,
                                   virt_type, uuid=uuid, options=options)
        created.append(guest)
        _CREATED.add(guest.name)
        return guest

    yield make

    # A test may leave libvirtd frozen or stopped: bring it back to remove the domains by name.
    problems: list[str] = []
    try:
        libvirtd.ensure_running()
    except Exception as exc:  # noqa: BLE001 - still kill the guests below
        problems.append(f"libvirtd could not be restarted: {exc}")
    from tests.harness.lxc import remove_cgroups

    for guest in created:
        done = remove_domain(guest.name)
        if any(d.startswith("libvirt failed") for d in done):
            problems.append(f"{guest.name}: {done}")
        if not guest.qemu_pids():
            _CREATED.discard(guest.name)
            # libvirt 11 leaves the cgroups of a guest killed while libvirtd was down
            left = remove_cgroups(guest.name, "qemu")
            if left:
                problems.append(f"{guest.name}: cgroups not empty: {left}")
    if problems:
        pytest.fail("teardown: " + "; ".join(problems))


MakeSmallFs = Callable[..., SmallFilesystem]


@pytest.fixture
def make_small_fs(tmp_path: Path, libvirtd: Libvirtd) -> Iterator[MakeSmallFs]:
    """Factory: ``make_small_fs(size_mib)`` mounts a size-limited tmpfs at a directory of this
    test, in the mount namespace qemu is started from (a disk backed by a file on it fails
    with ENOSPC once full). Teardown removes the domains listed in its ``users``, unmounts it
    and fails the test if the mount stays."""
    made: list[SmallFilesystem] = []

    def make(size_mib: int = 8) -> SmallFilesystem:
        pid = libvirtd.pid
        if pid is None:
            pytest.fail("libvirtd is not running: no mount namespace to mount in")
        fs = SmallFilesystem(tmp_path / f"smallfs{len(made)}", size_mib, pid)
        made.append(fs)
        return fs.mount()

    yield make

    problems: list[str] = []
    try:
        libvirtd.ensure_running()
    except Exception as exc:  # noqa: BLE001 - still unmount below
        problems.append(f"libvirtd could not be restarted: {exc}")
    for fs in made:
        try:
            fs.close()
        except HarnessError as exc:
            problems.append(str(exc))
    if problems:
        pytest.fail("teardown: " + "; ".join(problems))


@pytest.fixture
def guest_network(libvirtd: Libvirtd) -> Iterator[GuestNetwork]:
    """A bridge in a network namespace made for this test (see GuestNetwork); teardown
    removes the guests started on it, the namespace and the taps, and fails the test if any
    remains."""
    net = GuestNetwork().create()
    yield net
    try:
        libvirtd.ensure_running()
        net.close()
    except HarnessError as exc:
        pytest.fail(f"teardown: {exc}")


@pytest.fixture
def guest(make_guest: MakeGuest) -> GuestResource:
    """A graceful guest's XML file (not started)."""
    return make_guest("graceful")


@pytest.fixture
def ignoring_guest(make_guest: MakeGuest) -> GuestResource:
    """A guest that ignores ACPI shutdown requests (not started)."""
    return make_guest("ignore")


# -- libvirt-lxc containers (PyLXCDomain) ----------------------------------------------------


@pytest.fixture(scope="session")
def lxc_rootfs() -> Path:
    """The busybox root filesystem every test container mounts read-only (built once)."""
    from tests.harness.lxc import build_rootfs

    return build_rootfs()


@pytest.fixture(scope="session")
def lxc_driver(libvirtd: Libvirtd) -> str:
    """The lxc:///system URI, once it answers (the session's libvirtd serves it too)."""
    from tests.harness.domains import with_connection
    from tests.harness.lxc import LXC_EMULATOR, LXC_URI

    if not os.access(LXC_EMULATOR, os.X_OK):
        pytest.fail(f"{LXC_EMULATOR} is missing: libvirt-lxc cannot run here "
                    "(install libvirt-daemon-driver-lxc)")
    try:
        with_connection(lambda conn: conn.getLibVersion(), LXC_URI, 15.0, "connect lxc")
    except Exception as exc:  # noqa: BLE001 - turned into the failure's message
        pytest.fail(f"libvirtd does not serve {LXC_URI}: {exc}\n{libvirtd.log_tail()}")
    return LXC_URI


from tests.harness.lxc import Container  # noqa: E402

MakeContainer = Callable[..., Container]


@pytest.fixture
def make_container(request: pytest.FixtureRequest, tmp_path: Path, libvirtd: Libvirtd,
                   lxc_driver: str, lxc_rootfs: Path) -> Iterator[MakeContainer]:
    """Factory: ``make_container("graceful"|"ignore"|"busybox", **xml_options)`` writes a
    uniquely named container XML file in tmp_path and returns its Container. Nothing is
    started; every container made is destroyed by name (its libvirt_lxc controller and
    everything below it killed by pid as the last resort) in teardown."""
    from tests.harness.lxc import new_container

    created: list[Container] = []

    def make(mode: str = "graceful", **options: str) -> Container:
        stem = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name.removeprefix("test_"))
        name = _unique_name(stem).replace("pyvd-", "pyvd-lxc-", 1)
        container = new_container(tmp_path, name, mode, lxc_rootfs, **options)
        created.append(container)
        return container

    yield make

    from tests.harness.lxc import kill_container_processes, remove_cgroups, thaw_frozen

    problems: list[str] = []
    for container in created:
        thaw_frozen(container.name)
    try:
        libvirtd.ensure_running()
    except Exception as exc:  # noqa: BLE001 - still kill the containers below
        problems.append(f"libvirtd could not be restarted: {exc}")
    for container in created:
        done = remove_domain(container.name, uri=lxc_driver)
        if any(d.startswith("libvirt failed") for d in done):
            problems.append(f"{container.name}: {done}")
        killed = kill_container_processes(container.name)
        if killed:
            problems.append(f"{container.name}: killed leftover processes {killed}")
        if container.controller_pids():
            problems.append(f"{container.name}: controller still runs")
        left = remove_cgroups(container.name)
        if left:
            problems.append(f"{container.name}: cgroups not empty: {left}")
    if problems:
        pytest.fail("teardown: " + "; ".join(problems))
