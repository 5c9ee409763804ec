"""migrate_options and the migration URIs."""

from __future__ import annotations

import pytest

from pyvirtualdomain.migration_options import (
    MigrateOptionError,
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
    ("--live --offline", "exclude each other"),
    ("--timeout 30", "migration_deadline_action"),
    ("--compressed=yes", "takes no value"),
    ("--graphicsuri 'unterminated", "No closing quotation"),
    # issue 13 #7: options that make the agent lose track of the guest
    ("--dname web2", "--dname is not accepted: the guest would run on the target under "
                     "another name"),
    ("--dname=web2", "--dname is not accepted"),
    ("--undefinesource", "--undefinesource is not accepted"),
])
def test_bad_options(text, needle):
    with pytest.raises(MigrateOptionError, match=needle):
        parse_migrate_options(text)


def test_libvirt_knows_every_flag_and_param_we_map():
    import libvirt

    from pyvirtualdomain.migration_options import FLAG_OPTIONS, VALUE_OPTIONS
    for flag in FLAG_OPTIONS.values():
        assert flag is None or hasattr(libvirt, flag), flag
    for param, _ in VALUE_OPTIONS.values():
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
