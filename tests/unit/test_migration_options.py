"""migrate_options and the migration URIs."""

from __future__ import annotations

import pytest

from pyvirtualdomain.migration_options import (
    MigrateOptionError,
    check_hypervisor,
    check_parameters,
    destination_uri,
    migration_uri,
    migration_warnings,
    parse_migrate_options,
)


@pytest.mark.parametrize("hv,kw,expected", [
    ("qemu:///system", {}, "qemu://node2/system"),
    ("qemu:///system", {"transport": "ssh"}, "qemu+ssh://node2/system"),
    ("qemu+unix:///system", {"transport": "tcp"}, "qemu+tcp://node2/system"),
    ("qemu:///system", {"transport": "ssh", "user": "migr"}, "qemu+ssh://migr@node2/system"),
    ("qemu://node1:9999/system", {"transport": "tcp"}, "qemu+tcp://node2:9999/system"),
    ("qemu:///system", {"network_suffix": "-mig"}, "qemu://node2-mig/system"),
    ("qemu:///system", {"remoteuri": "qemu+tls://%n.example/system", "user": "ignored"},
     "qemu+tls://node2.example/system"),
    ("xen:///system", {"transport": "ssh"}, "xen+ssh://node2/system"),
    # issue 21 #2: the hypervisor's own transport, port and query are kept (VirtualDomain's
    # sed keeps everything but the host part, its user included)
    ("qemu+ssh://node1/system?keyfile=/root/.ssh/id_ha", {},
     "qemu+ssh://node2/system?keyfile=/root/.ssh/id_ha"),
    ("qemu+ssh://root@node1:2222/system", {}, "qemu+ssh://node2:2222/system"),
    ("qemu+ssh://root@node1:2222/system", {"user": "ha"}, "qemu+ssh://ha@node2:2222/system"),
    ("qemu+tls://[fd00::1]:16514/system", {}, "qemu+tls://node2:16514/system"),
    ("qemu+ssh://node1/system", {"transport": "SSH"}, "qemu+ssh://node2/system"),
    # a user VirtualDomain would not put into the URI is not put there either
    ("qemu:///system", {"transport": "ssh", "user": "svc.ha"}, "qemu+ssh://node2/system"),
    ("qemu:///system", {"transport": "ssh", "user": "Admin"}, "qemu+ssh://node2/system"),
])
def test_destination_uri(hv, kw, expected):
    assert destination_uri(hv, "node2", **kw) == expected


def test_suffix_goes_before_the_domain_of_a_fqdn():
    assert destination_uri("qemu:///system", "node2.lab.example", network_suffix="-mig") == \
        "qemu://node2-mig.lab.example/system"


def test_migration_uri_precedence():
    none = parse_migrate_options("")
    opt = parse_migrate_options("--migrateuri=tcp://%n-opt:49152")
    assert migration_uri("qemu:///system", "n2", none) is None
    assert migration_uri("qemu:///system", "n2", opt) == "tcp://n2-opt:49152"
    assert migration_uri("qemu:///system", "n2", opt, migrateuri="tcp://%n-p") == "tcp://n2-p"
    assert migration_uri("qemu:///system", "n2", none, network_suffix="-mig",
                         migrateport=49160) == "tcp://n2-mig:49160"
    assert migration_uri("qemu:///system", "n2", none, network_suffix="-mig") == "tcp://n2-mig"
    assert migration_uri("xen:///system", "n2", none, network_suffix="-mig") == "n2-mig"


def test_percent_n_is_the_migration_target_as_virtualdomain_substitutes_it():
    """Issue 21 #3: %n in migrateuri and --migrateuri= is VirtualDomain's target: the node
    with the migration network suffix (and user@), unless remoteuri is set."""
    none = parse_migrate_options("")
    opt = parse_migrate_options("--migrateuri=tcp://%n:49152")
    assert migration_uri("qemu:///system", "node2", none, migrateuri="tcp://%n:49152",
                         network_suffix="-mig") == "tcp://node2-mig:49152"
    assert migration_uri("qemu:///system", "node2", opt, network_suffix="-mig",
                         user="ha") == "tcp://ha@node2-mig:49152"
    assert migration_uri("qemu:///system", "node2", opt, network_suffix="-mig",
                         remoteuri="qemu+ssh://%n/system") == "tcp://node2:49152"


def test_options_to_flags_and_params():
    o = parse_migrate_options("--p2p --compressed --auto-converge --verbose "
                              "--bandwidth 50 --listen-address=0.0.0.0 --migrateuri tcp://%n")
    assert o.p2p
    assert set(o.flag_names) == {"VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_COMPRESSED",
                                 "VIR_MIGRATE_AUTO_CONVERGE"}
    assert o.param_values == {"VIR_MIGRATE_PARAM_BANDWIDTH": 50,
                              "VIR_MIGRATE_PARAM_LISTEN_ADDRESS": "0.0.0.0",
                              "VIR_MIGRATE_PARAM_URI": "tcp://%n"}


def test_option_values_are_never_shell_interpreted():
    o = parse_migrate_options("--tls-destination 'a b; rm -rf /' --listen-address=$(id)")
    assert o.param_values["VIR_MIGRATE_PARAM_TLS_DESTINATION"] == "a b; rm -rf /"
    assert o.param_values["VIR_MIGRATE_PARAM_LISTEN_ADDRESS"] == "$(id)"


@pytest.mark.parametrize("text,needle", [
    ("--bogus", "unknown option"),
    ("--bandwidth", "needs a value"),
    ("--bandwidth fast", "whole number"),
    ("--live --offline", "--offline cannot move a running guest"),
    ("--compressed=yes", "takes no value"),
    ("--graphicsuri 'unterminated", "No closing quotation"),
    ("--timeout 0", "1 or more seconds"),
    ("--timeout-postcopy --timeout 5", "need --postcopy"),
    ("--postcopy-after-precopy", "need --postcopy"),
    ("--timeout-suspend", "need --timeout"),
    ("--comp-methods zstd", "need --parallel"),
    # issue 13 #7: options that make the agent lose track of the guest
    ("--dname web2", "--dname is not accepted: the guest would run on the target under "
                     "another name"),
    ("--dname=web2", "--dname is not accepted"),
    ("--desturi qemu+ssh://x/system", "use remoteuri"),
])
def test_bad_options(text, needle):
    with pytest.raises(MigrateOptionError, match=needle):
        parse_migrate_options(text)


def test_what_virtualdomain_passes_to_virsh_works_here_too():
    """Issue 21 #1: options VirtualDomain passes through to virsh that libvirt's API can
    express are carried out, not only tolerated."""
    o = parse_migrate_options("-v --timeout 60 --migrate-disks vda,vdb --persistent "
                              "--undefinesource --comp-methods mt,xbzrle --comp-mt-level 3 "
                              "--parallel --parallel-connections 4 --tls --bandwidth 100 "
                              "--xml /etc/vm1-target.xml --auto-converge-initial 20")
    assert o.timeout_s == 60 and o.timeout_action == "suspend"
    assert o.param_values["VIR_MIGRATE_PARAM_MIGRATE_DISKS"] == ["vda", "vdb"]
    assert o.param_values["VIR_MIGRATE_PARAM_COMPRESSION"] == ["mt", "xbzrle"]
    assert o.param_values["VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS"] == 4
    assert o.xml_files == {"VIR_MIGRATE_PARAM_DEST_XML": "/etc/vm1-target.xml"}
    assert {"VIR_MIGRATE_PERSIST_DEST", "VIR_MIGRATE_UNDEFINE_SOURCE", "VIR_MIGRATE_TLS",
            "VIR_MIGRATE_PARALLEL"} <= set(o.flag_names)
    pc = parse_migrate_options("--postcopy --timeout 30 --timeout-postcopy")
    assert (pc.timeout_s, pc.timeout_action) == (30, "postcopy")
    assert parse_migrate_options("--postcopy --postcopy-after-precopy").postcopy_after_precopy
    assert "timeout=60s (suspend)" in o.describe() and "tls" in o.describe()


def test_multithread_compression_is_refused_for_a_qemu_without_it():
    o = parse_migrate_options("--compressed --comp-methods mt")
    assert check_hypervisor(o, 7_002_000) == []
    assert check_hypervisor(o, None) == []
    [problem] = check_hypervisor(o, 10_000_000)
    assert "qemu 10.0.0 has no multi-thread compression" in problem
    assert check_hypervisor(parse_migrate_options("--comp-methods xbzrle"), 10_000_000) == []


def test_libvirt_knows_every_flag_and_param_we_map():
    """Every flag and parameter libvirt-python here has (a newer libvirt adds ones: zlib and
    zstd levels need libvirt 9.4; migrate_to then fails with libvirt's own reason)."""
    import libvirt

    from pyvirtualdomain.migration_options import FLAG_OPTIONS, VALUE_OPTIONS, XML_FILE_OPTIONS
    newer = {"VIR_MIGRATE_PARAM_COMPRESSION_ZLIB_LEVEL", "VIR_MIGRATE_PARAM_COMPRESSION_ZSTD_LEVEL"}
    for flag in FLAG_OPTIONS.values():
        assert flag is None or hasattr(libvirt, flag), flag
    for param, _ in VALUE_OPTIONS.values():
        assert param in newer or hasattr(libvirt, param), param
    for param in XML_FILE_OPTIONS.values():
        assert hasattr(libvirt, param), param


def _params(**kw: str):
    from pyvirtualdomain.metadata import load_schema
    from pyvirtualdomain.params import build_params

    return build_params({"config": "/x.xml", **kw}, load_schema("PyVirtualDomain"))


def test_persistent_is_refused_for_a_guest_node_and_warned_about_otherwise():
    p = _params(migrate_options="--persistent --compressed")
    assert check_parameters(p) == []
    assert any("--persistent" in w for w in migration_warnings(p))
    problems = check_parameters(p, guest_node="guest1")
    assert problems and "guest node guest1" in problems[0] and "--persistent" in problems[0]
    assert migration_warnings(_params(migrate_options="--compressed")) == []
    assert check_parameters(_params(migrate_options="--undefinesource")) == []
    assert "--undefinesource" in check_parameters(_params(migrate_options="--undefinesource"),
                                                  guest_node="guest1")[0]


def test_a_user_virtualdomain_would_ignore_is_accepted_and_warned_about():
    """Issue 21 #1: migration_user=svc.ha made start answer 6. VirtualDomain leaves such a
    user out of the target URI; so does the agent, with a warning."""
    assert check_parameters(_params(migration_user="svc.ha")) == []
    [w] = migration_warnings(_params(migration_user="svc.ha"))
    assert "not used in the target URI" in w
    assert migration_warnings(_params(migration_user="ha")) == []
    assert check_parameters(_params(migration_transport="SSH")) == []
