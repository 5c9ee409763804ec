"""The Debian package as a cluster admin gets it (issue 15).

`make deb` builds pyvirtualdomain_<version>_all.deb (lintian without errors); `apt-get install
./pyvirtualdomain_<version>_all.deb` installs it for Debian's /usr/bin/python3 with Debian's
python3-libvirt, python3-lxml and python3-psutil (no venv, nothing compiled); the INSTALLED
agent then passes ocf-tester, crm_resource --validate, pcs (describe, create on a CIB file, a
guest node) and the start/monitor/migrate_to/migrate_from/stop path between two real libvirt
hosts; `apt-get purge` leaves none of its files behind. The module holds the machine-wide
harness lock while the package is installed and puts back whatever it replaced."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import pytest

from tests.harness import INIT_MARKER, AgentResult, GuestArtifacts, GuestResource, wait_for_console
from tests.harness.agent import HANG_GRACE_S, run_agent_argv
from tests.harness.common import CLEAN_PATH, REPO_ROOT, HostLock, wait_until
from tests.harness.guest import domain_xml
from tests.harness.twohosts import NODE_NAMES, SharedHostLock, TwoHosts

pytestmark = pytest.mark.integration

PACKAGE = "pyvirtualdomain"
AGENTS = ("PyVirtualDomain", "PyLXCDomain")
OCF_DIR = Path("/usr/lib/ocf/resource.d/custom")
SITE = Path("/usr/lib/python3/dist-packages")
DATA_DIR = Path("/usr/share/pyvirtualdomain")
DROP_IN = Path("/usr/lib/systemd/system/resource-agents-deps.target.d/50-pyvirtualdomain.conf")
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
APT_ENV = {"PATH": SYSTEM_PATH, "LANG": "C", "DEBIAN_FRONTEND": "noninteractive"}
RUNTIME_DEPENDS = ("python3-libvirt", "python3-lxml", "python3-psutil")


def _run(argv: list[str], *, env: Mapping[str, str] | None = None, timeout_s: float = 120.0,
         cwd: Path | str = "/", user: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                          env=dict(env) if env is not None else {"PATH": CLEAN_PATH,
                                                                 "LANG": "C"},
                          cwd=cwd, stdin=subprocess.DEVNULL, check=False, user=user,
                          group=user, extra_groups=[] if user is not None else None)


def _version() -> str:
    r = _run(["python3", str(REPO_ROOT / "tools" / "version.py")], env={"PATH": SYSTEM_PATH})
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _metadata(agent: str) -> ET.Element:
    return ET.parse(REPO_ROOT / "metadata" / f"{agent}.xml").getroot()


def _package_status() -> str:
    r = _run(["dpkg-query", "-W", "-f=${Status}", PACKAGE])
    return r.stdout.strip() if r.returncode == 0 else ""


@dataclass
class Installed:
    deb: Path
    files: list[Path]  # dpkg -L right after the install
    existed_before: set[Path] = field(default_factory=set)  # of those paths
    purged: bool = False


@pytest.fixture(scope="module")
def deb() -> Path:
    """`make deb` (a no-op when the .deb is newer than every source file)."""
    for tool in ("dpkg-buildpackage", "lintian", "dh_python3"):
        assert shutil.which(tool, path=SYSTEM_PATH), f"{tool} missing: run make deps"
    r = _run(["make", "-s", "deb"], env=os.environ, timeout_s=900, cwd=REPO_ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    path = REPO_ROOT / "build" / "deb" / f"{PACKAGE}_{_version()}_all.deb"
    assert path.is_file(), f"make deb did not write {path}"
    lintian = (path.parent / "lintian.txt").read_text()
    assert not re.search(r"^E: ", lintian, re.M), lintian
    return path


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="module")
def installed(deb: Path) -> Iterator[Installed]:
    """The package installed with apt-get as an admin would; purged again at the end (also
    when a test failed), and any file it replaced put back."""
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    lock = HostLock()
    lock.acquire()
    saved: dict[Path, tuple[bytes, int]] = {}
    inst: Installed | None = None
    try:
        assert "installed" not in _package_status(), \
            f"{PACKAGE} is already installed here; this test installs and purges it"
        contents = _run(["dpkg-deb", "-c", str(deb)])
        assert contents.returncode == 0, contents.stderr
        paths = [Path(line.split(None, 5)[5].lstrip(".") or "/")
                 for line in contents.stdout.splitlines() if line.strip()]
        for p in paths:
            if p.is_file():  # e.g. agents left by `make install`
                saved[p] = (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        existed = {p for p in paths if p.exists()}
        r = _run(["apt-get", "install", "-y", f"./{deb.name}"], env=APT_ENV, timeout_s=600,
                 cwd=deb.parent)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        files = _run(["dpkg", "-L", PACKAGE]).stdout.split("\n")
        inst = Installed(deb, [Path(f) for f in files if f.startswith("/")], existed)
        yield inst
    finally:
        try:
            if "installed" in _package_status() and not (inst and inst.purged):
                _run(["apt-get", "purge", "-y", PACKAGE], env=APT_ENV, timeout_s=600)
            for p, (data, mode) in saved.items():
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
                p.chmod(mode)
        finally:
            lock.release()
            signal.signal(signal.SIGTERM, previous)


# -- what got installed ---------------------------------------------------------------------


def test_package_fields(installed: Installed) -> None:
    version = _version()
    assert installed.deb.name == f"{PACKAGE}_{version}_all.deb"
    r = _run(["dpkg-query", "-W", "-f=${Version}\n${Architecture}\n${Depends}\n${Recommends}",
              PACKAGE])
    got_version, arch, depends, recommends = r.stdout.split("\n")
    assert (got_version, arch) == (version, "all")
    names = {re.sub(r"\s*\(.*\)", "", d).strip() for d in depends.split(",")}
    assert set(RUNTIME_DEPENDS) <= names, depends
    assert recommends == "resource-agents"


def test_files_in_debian_places(installed: Installed) -> None:
    files = set(installed.files)
    for agent in AGENTS:
        path = OCF_DIR / agent
        assert path in files
        assert path.read_text().split("\n", 1)[0] == "#!/usr/bin/python3"
        assert os.access(path, os.X_OK)
        assert (DATA_DIR / f"{agent}.xml").read_bytes() == \
            (REPO_ROOT / "metadata" / f"{agent}.xml").read_bytes()
        man = Path(f"/usr/share/man/man7/ocf_custom_{agent}.7.gz")
        assert man in files
        w = _run(["man", "-w", f"ocf_custom_{agent}"])
        assert w.stdout.strip() == str(man), w.stdout + w.stderr
        page = _run(["man", "--warnings", f"ocf_custom_{agent}"],
                    env={"PATH": CLEAN_PATH, "LC_ALL": "C.UTF-8", "MANWIDTH": "80"})
        assert page.returncode == 0 and page.stderr == "", page.stderr
        assert f"ocf_custom_{agent} - " in page.stdout
    assert Path("/usr/share/man/man8/pyvd-switch-agent.8.gz") in files
    assert SITE / "pyvirtualdomain" / "cli.py" in files
    # Below /usr (merged /usr: Debian 13's lintian rejects /lib paths as aliased-location).
    assert DROP_IN in files, sorted(str(f) for f in files if "systemd" in str(f))
    assert DROP_IN.read_text() == (REPO_ROOT / "systemd" / "50-pyvirtualdomain.conf").read_text()
    # Nothing outside the distribution's paths, nothing naming the checkout or a venv.
    for f in installed.files:
        assert not str(f).startswith(("/usr/local", "/opt", str(REPO_ROOT))), f
        if f.is_file() and (f.parent == OCF_DIR or f.suffix in (".py", ".xml", ".conf")):
            text = f.read_bytes()
            assert str(REPO_ROOT).encode() not in text and b".venv" not in text, f


def _import_paths(stderr: str) -> dict[str, set[str]]:
    """Top-level module -> the files it was loaded from, from PYTHONVERBOSE=1 output."""
    found: dict[str, set[str]] = {}
    pattern = (r"^# code object from '?([^'\s]+)'?$"
               r"|^# extension module '[^']+' loaded from '([^']+)'$")
    for m in re.finditer(pattern, stderr, re.M):
        path = m.group(1) or m.group(2)
        name = Path(path.replace("/__pycache__/", "/")).name
        for top in ("pyvirtualdomain", "libvirt", "libvirtmod", "lxml", "psutil"):
            if f"/{top}/" in path or name.split(".")[0] == top:
                found.setdefault(top, set()).add(path)
    return found


def test_installed_agent_runs_on_debian_python_without_venv(installed: Installed,
                                                            guest: GuestResource) -> None:
    # The environment Pacemaker's executor gives: no VIRTUAL_ENV, no venv or pyenv on PATH.
    env = {"PATH": CLEAN_PATH, "OCF_ROOT": "/usr/lib/ocf", "OCF_RESKEY_config": str(guest.config),
           "OCF_RESKEY_hypervisor": "qemu:///system", "HA_RSCTMP": str(guest.state_dir),
           "OCF_RESKEY_CRM_meta_timeout": "20000", "PYTHONVERBOSE": "1"}
    validated = _run([str(OCF_DIR / "PyVirtualDomain"), "validate-all"], env=env)
    assert validated.returncode == 0, validated.stderr[-3000:]
    # A probe asks libvirtd (the guest is not running: 7).
    probe = _run([str(OCF_DIR / "PyVirtualDomain"), "monitor"], env=env)
    assert probe.returncode == 7, probe.stderr[-3000:]
    loaded = _import_paths(validated.stderr + probe.stderr)
    assert {"pyvirtualdomain", "libvirt", "libvirtmod", "lxml"} <= set(loaded), loaded
    for top, paths in loaded.items():
        for path in paths:
            assert path.startswith(str(SITE) + "/"), (top, path)
    # sys.prefix is /usr: that is how the package finds /usr/share/pyvirtualdomain.
    probe = _run(["/usr/bin/python3", "-c", "import sys, pyvirtualdomain.locate as l; "
                  "print(sys.prefix); print(l.metadata_path('PyLXCDomain'))"])
    assert probe.stdout.split() == ["/usr", str(DATA_DIR / "PyLXCDomain.xml")], probe.stderr
    # meta-data needs nothing else: any user, no environment.
    for agent in AGENTS:
        md = _run([str(OCF_DIR / agent), "meta-data"], env={}, user=65534)
        assert md.returncode == 0, md.stderr
        assert md.stdout == (REPO_ROOT / "metadata" / f"{agent}.xml").read_text()


def test_ocf_tester_on_installed_agent(installed: Installed, guest: GuestResource) -> None:
    assert shutil.which("ocf-tester", path=CLEAN_PATH), "ocf-tester missing: make deps"
    r = _run(["ocf-tester", "-n", "pyvd-deb-ocf-tester", "-o", f"config={guest.config}",
              "-o", "hypervisor=qemu:///system", str(OCF_DIR / "PyVirtualDomain")],
             timeout_s=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "passed all tests" in r.stdout
    assert "HARNESS-INIT-MARKER" in guest.console()  # it really started the guest
    assert guest.state() is None  # and stopped it


def _crm_validate(agent: str, *options: str) -> subprocess.CompletedProcess[str]:
    args = ["crm_resource", "--validate", "--class", "ocf", "--provider", "custom", "--agent",
            agent]
    for opt in options:
        args += ["--option", opt]
    return _run(args, timeout_s=60)


def test_crm_resource_on_installed_agent(installed: Installed, guest: GuestResource,
                                         tmp_path: Path) -> None:
    ok = _crm_validate("PyVirtualDomain", f"config={guest.config}", "hypervisor=qemu:///system")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for agent in AGENTS:
        missing = _crm_validate(agent, f"config={tmp_path / 'absent.xml'}")
        assert missing.returncode == 5, missing.stdout + missing.stderr
        assert "does not exist on this node" in missing.stdout + missing.stderr
    listed = _run(["crm_resource", "--list-agents", "ocf:custom"])
    assert listed.returncode == 0, listed.stderr
    assert set(AGENTS) <= set(listed.stdout.split()), listed.stdout


# -- pcs ------------------------------------------------------------------------------------


def _pcs(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    assert shutil.which("pcs", path=CLEAN_PATH), "pcs missing: make deps installs it"
    return _run(["pcs", *args], timeout_s=timeout_s)


def _pcs_version() -> tuple[int, ...]:
    r = _pcs("--version")
    assert r.returncode == 0, r.stderr
    return tuple(int(p) for p in re.findall(r"\d+", r.stdout)[:3])


@dataclass
class Described:
    text: str  # the long description (flattened)
    flags: str  # " (required) (unique)"
    type: str | None = None  # pcs 0.12 prints type and default, 0.11 neither
    default: str | None = None


def _parse_describe(text: str, new_layout: bool) -> tuple[dict[str, Described], dict[str, str]]:
    """``pcs resource describe``'s parameters and default operations' timeouts.

    pcs 0.11 (Debian 12): ``  name (required): long description`` on one (wrapped) line, and
    each operation's interval and timeout on lines of their own. pcs 0.12 (Debian 13): the
    name and flags alone, then ``Description:``, ``Type:`` and ``Default:`` lines, and each
    operation's ``interval=... timeout=...`` on one line."""
    options = text.split("\nResource options:\n", 1)[1].split("\n\n", 1)[0]
    described: dict[str, Described] = {}
    for block in re.split(r"\n(?=  \S)", options):
        if new_layout:
            m = re.match(r"^  (\S+)((?: \((?:required|unique)\))*)\n"
                         r"    Description: (.*?)(?:\n    Type: (\S+))?(?:\n    Default: (.*))?$",
                         block, re.S)
            assert m, block
            described[m.group(1)] = Described(_flat(m.group(3)), m.group(2), m.group(4),
                                              m.group(5))
        else:
            m = re.match(r"^  (\S+)((?: \((?:required|unique)\))*): (.*)$", block, re.S)
            assert m, block
            described[m.group(1)] = Described(_flat(m.group(3)), m.group(2))
    ops_text = text.split("\nDefault operations:\n", 1)[1]
    sep = " " if new_layout else "\n    "
    ops = dict(re.findall(rf"^  (\S+):\n    interval=\S+{sep}timeout=(\S+)$", ops_text, re.M))
    return described, ops


@pytest.mark.parametrize("agent", AGENTS)
def test_pcs_describe(installed: Installed, agent: str) -> None:
    root = _metadata(agent)
    r = _pcs("resource", "describe", f"ocf:custom:{agent}")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    # Every parameter with its flags and long description (and, from pcs 0.12 on, its type
    # and default), then the default operations.
    text = r.stdout
    assert text.startswith(f"ocf:custom:{agent} - {_flat(root.findtext('shortdesc', ''))}")
    new_layout = _pcs_version() >= (0, 12)
    described, listed = _parse_describe(text, new_layout)
    params = root.findall("parameters/parameter")
    assert list(described) == [p.get("name") for p in params]
    for p in params:
        d = described[p.get("name", "")]
        assert d.text == _flat(p.findtext("longdesc", "")), p.get("name")
        flags = "".join(f" ({f})" for f in ("required", "unique") if p.get(f) == "1")
        assert d.flags == flags, p.get("name")
        if new_layout:
            content = p.find("content")
            assert content is not None
            # an empty default is not printed
            assert (d.type, d.default) == (content.get("type"), content.get("default") or None), \
                p.get("name")
    expected = {a.get("name"): a.get("timeout") for a in root.findall("actions/action")
                if a.get("name") not in ("meta-data", "validate-all", "status")}
    assert listed == expected

    # Short description, type and default of every parameter, and every action with its
    # timeout, as pcs parses them (the JSON its daemon's web UI reads: this pcs' text
    # output shows no type or default for any agent).
    info = _pcs("resource", "get_resource_agent_info", f"ocf:custom:{agent}")
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["shortdesc"] == root.findtext("shortdesc")
    by_name = {p["name"]: p for p in data["parameters"]}
    assert list(by_name) == [p.get("name") for p in params]
    for p in params:
        got = by_name[p.get("name", "")]
        content = p.find("content")
        assert content is not None
        assert (got["shortdesc"], got["type"], got["default"]) == \
            (p.findtext("shortdesc"), content.get("type"), content.get("default")), got
        assert got["required"] == (p.get("required") == "1")
    actions = {a["name"]: a for a in data["actions"]}
    for a in root.findall("actions/action"):
        assert actions[a.get("name")]["timeout"] == a.get("timeout"), a.get("name")
        assert actions[a.get("name")].get("interval") == a.get("interval"), a.get("name")


def _domain_config(path: Path, name: str) -> Path:
    path.write_text(f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory>"
                    "<os><type arch='x86_64'>hvm</type></os><devices>"
                    "<emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>\n")
    return path


def test_pcs_creates_resource_and_guest_node_on_cib_file(installed: Installed,
                                                         tmp_path: Path) -> None:
    cib = tmp_path / "cib.xml"
    empty = _run(["cibadmin", "--empty"])
    assert empty.returncode == 0, empty.stderr
    cib.write_text(empty.stdout)
    f = ("-f", str(cib))
    assert _pcs(*f, "property", "set", "stonith-enabled=false").returncode == 0
    # pcs 0.12 runs the agent's validate-all on `resource create` (0.11 does not): with
    # configs that exist here it passes and pcs says nothing.
    vm1 = _domain_config(tmp_path / "vm1.xml", "vm1")
    created = _pcs(*f, "resource", "create", "vm1", "ocf:custom:PyVirtualDomain",
                   f"config={vm1}", "migration_transport=ssh", "meta", "allow-migrate=true")
    assert created.returncode == 0 and created.stderr == "", created.stderr
    guest = _pcs(*f, "cluster", "node", "add-guest", "guest1", "vm1", "remote-addr=192.0.2.11")
    assert guest.returncode == 0, guest.stderr
    ct1 = tmp_path / "ct1.xml"
    ct1.write_text("<domain type='lxc'><name>ct1</name><memory unit='MiB'>64</memory>"
                   "<os><type>exe</type><init>/bin/sh</init></os></domain>\n")
    ct = _pcs(*f, "resource", "create", "ct1", "ocf:custom:PyLXCDomain", f"config={ct1}")
    assert ct.returncode == 0 and ct.stderr == "", ct.stderr

    # A config that does not exist on the node where pcs runs: pcs 0.12 creates the resource
    # with our validate-all's reason as a warning, and refuses it with --agent-validation.
    missing = tmp_path / "absent.xml"
    warned = _pcs(*f, "resource", "create", "vm9", "ocf:custom:PyVirtualDomain",
                  f"config={missing}")
    assert warned.returncode == 0, warned.stdout + warned.stderr
    reason = f"ocf-exit-reason:config {missing} does not exist on this node"
    if _pcs_version() >= (0, 12):
        assert "Validation result from agent" in warned.stderr and reason in warned.stderr, \
            warned.stderr
    else:
        assert warned.stderr == "", warned.stderr
    assert _pcs(*f, "resource", "delete", "vm9").returncode == 0
    if _pcs_version() >= (0, 12):
        refused = _pcs(*f, "resource", "create", "vm8", "ocf:custom:PyVirtualDomain",
                       f"config={missing}", "--agent-validation")
        assert refused.returncode == 1 and reason in refused.stderr, refused.stderr

    root = ET.parse(cib).getroot()
    vm1 = root.find(".//primitive[@id='vm1']")
    assert vm1 is not None
    assert (vm1.get("class"), vm1.get("provider"), vm1.get("type")) == \
        ("ocf", "custom", "PyVirtualDomain")
    meta = {n.get("name"): n.get("value") for n in vm1.iterfind("meta_attributes/nvpair")}
    assert meta == {"allow-migrate": "true", "remote-node": "guest1",
                    "remote-addr": "192.0.2.11"}
    ops = {o.get("name"): o.get("timeout") for o in vm1.iterfind("operations/op")}
    expected = {a.get("name"): a.get("timeout")
                for a in _metadata("PyVirtualDomain").findall("actions/action")
                if a.get("name") not in ("meta-data", "validate-all", "status")}
    assert ops == expected
    # Pacemaker itself accepts the configuration.
    verified = _run(["crm_verify", "--xml-file", str(cib)])
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # pcs refuses `meta remote-node=` on `resource create` for every agent (it asks for
    # `cluster node add-guest`, used above): the same answer for the reference agent, so
    # nothing in our metadata causes it.
    for rsc, agent in (("vm2", "ocf:custom:PyVirtualDomain"),
                       ("vm3", "ocf:heartbeat:VirtualDomain")):
        refused = _pcs(*f, "resource", "create", rsc, agent, "config=/etc/pacemaker/x.xml",
                       "meta", "remote-node=guest2")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "use 'pcs cluster node add-guest'" in refused.stderr, refused.stderr


# -- the resource's life on two hosts -------------------------------------------------------


@pytest.fixture(scope="module")
def hosts(installed: Installed) -> Iterator[TwoHosts]:
    missing = [p for p in ("libvirtd", "virtlogd", "qemu-system-x86_64", "ip", "nsenter",
                           "unshare", "virsh") if not shutil.which(p, path=CLEAN_PATH)]
    assert not missing, f"not installed: {missing} (make deps)"
    with SharedHostLock(), TwoHosts() as two:
        yield two


def _agent(hosts: TwoHosts, host: str, action: str, params: Mapping[str, str], *,
           timeout_ms: int, state_dir: Path, name: str, interval_ms: int | None = None,
           migrating: bool = False) -> AgentResult:
    """The INSTALLED agent, run by its path (so by its shebang) inside host X, as Pacemaker's
    executor runs it there; ``migrating``: hostA -> hostB."""
    env = hosts.agent_env(action, params, timeout_ms=timeout_ms, instance=f"vm-{name}",
                          state_dir=state_dir / host, interval_ms=interval_ms,
                          migrate_source=NODE_NAMES["A"] if migrating else None,
                          migrate_target=NODE_NAMES["B"] if migrating else None)
    (state_dir / host).mkdir(parents=True, exist_ok=True)
    argv = hosts.nsenter_argv(host) + [str(OCF_DIR / "PyVirtualDomain"), action]
    return run_agent_argv(argv, env, action=action, agent="PyVirtualDomain",
                          limit_s=timeout_ms / 1000 + HANG_GRACE_S, where=f" on host{host}")


def test_start_monitor_migrate_stop_with_installed_agent(hosts: TwoHosts,
                                                         artifacts: GuestArtifacts,
                                                         tmp_path: Path) -> None:
    name = f"pyvd-deb-{secrets.token_hex(3)}"
    config = tmp_path / f"{name}.xml"
    console = Path("/var/log/libvirt/qemu") / f"{name}.console.log"  # per host
    config.write_text(domain_xml(name, "graceful", artifacts, "qemu", console,
                                 extra_cmdline="harness.tick=1"))
    params = {"config": str(config), "hypervisor": "qemu:///system",
              "migration_transport": "tcp"}

    def run(host: str, action: str, timeout_ms: int = 60000, interval_ms: int | None = None,
            migrating: bool = False) -> AgentResult:
        return _agent(hosts, host, action, params, timeout_ms=timeout_ms,
                      state_dir=tmp_path / "rsctmp", name=name, interval_ms=interval_ms,
                      migrating=migrating)

    try:
        assert run("A", "validate-all", 20000).rc == 0
        assert run("A", "monitor", 20000).rc == 7  # probe
        started = run("A", "start")
        assert started.rc == 0, started
        log_a = hosts.host_dir("A") / "log" / "qemu" / f"{name}.console.log"
        assert wait_for_console(log_a, INIT_MARKER, 60.0), log_a.read_text(errors="replace")
        assert run("A", "monitor", 20000, interval_ms=10000).rc == 0
        to = run("A", "migrate_to", migrating=True)
        assert to.rc == 0, to
        fr = run("B", "migrate_from", 30000, migrating=True)
        assert fr.rc == 0, fr
        assert wait_until(lambda: hosts.states(name) == {"A": None, "B": "running"}, 15.0), \
            hosts.states(name)
        assert run("B", "monitor", 20000, interval_ms=10000).rc == 0
        assert run("A", "monitor", 20000, interval_ms=10000).rc == 7
        stopped = run("B", "stop", 90000)
        assert stopped.rc == 0, stopped
        assert hosts.states(name) == {"A": None, "B": None}
    finally:
        hosts.remove_domain(name)


# -- removal --------------------------------------------------------------------------------


def test_purge_leaves_nothing(installed: Installed) -> None:
    r = _run(["apt-get", "purge", "-y", PACKAGE], env=APT_ENV, timeout_s=600)
    installed.purged = True
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "installed" not in _package_status()
    left = [p for p in installed.files if p.exists() and not p.is_dir()]
    assert left == [], left
    # Directories: the ones that were there before the install stay, ours are gone (with the
    # byte code py3compile wrote into them).
    new_dirs = [p for p in installed.files if p not in installed.existed_before and p.exists()]
    assert new_dirs == [], new_dirs
    for path in (SITE / "pyvirtualdomain", DATA_DIR, Path("/usr/share/doc") / PACKAGE):
        assert not path.exists(), path


# -- the RPM (built here; installing it is for the RPM platforms) ---------------------------


def test_rpm_layout_and_requires() -> None:
    assert shutil.which("rpmbuild", path=SYSTEM_PATH), "rpmbuild missing: make deps installs rpm"
    r = _run(["make", "-s", "rpm"], env=os.environ, timeout_s=600, cwd=REPO_ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    version = _version()
    rpm = REPO_ROOT / "build" / "rpm" / "RPMS" / "noarch" / f"{PACKAGE}-{version}-1.noarch.rpm"
    assert rpm.is_file()
    files = set(_run(["rpm", "-qpl", str(rpm)]).stdout.split())
    sitelib = _run(["/usr/bin/python3", "-c", "import sysconfig; print(sysconfig.get_path("
                    "'purelib', 'posix_prefix', {'base': '/usr'}))"]).stdout.strip()
    for path in (*(f"{OCF_DIR}/{a}" for a in AGENTS), f"{sitelib}/pyvirtualdomain/cli.py",
                 *(f"/usr/share/pyvirtualdomain/{a}.xml" for a in AGENTS),
                 *(f"/usr/share/man/man7/ocf_custom_{a}.7" for a in AGENTS),
                 "/usr/share/man/man8/pyvd-switch-agent.8",
                 "/usr/lib/systemd/system/resource-agents-deps.target.d/50-pyvirtualdomain.conf"):
        assert any(f == path or f.startswith(path + ".") for f in files), path
    requires = _run(["rpm", "-qp", "--requires", str(rpm)]).stdout.split("\n")
    assert set(RUNTIME_DEPENDS) <= {line.strip() for line in requires}, requires
    arch = _run(["rpm", "-qp", "--qf", "%{ARCH} %{VERSION}", str(rpm)]).stdout
    assert arch == f"noarch {version}"
    agent = subprocess.run(f"rpm2cpio {rpm} | cpio -i --quiet --to-stdout "
                           f".{OCF_DIR}/PyVirtualDomain", shell=True, capture_output=True,
                           timeout=60, env={"PATH": SYSTEM_PATH}, check=False)
    assert agent.stdout.split(b"\n", 1)[0] == b"#!/usr/bin/python3", agent.stderr
