"""The config file as start and validate-all read it."""

from __future__ import annotations

import pytest

from pyvirtualdomain.core.start_config import read_start_config
from pyvirtualdomain.errors import ConfigError

from ..conftest import make_ctx


def test_a_good_config(write_config, state_dir):
    cfg = write_config("<domain type='test'><name>sc1</name></domain>")
    got = read_start_config(make_ctx("start", {"config": str(cfg),
                                               "hypervisor": "test:///default"}, state_dir))
    assert (got.ident.name, got.uri) == ("sc1", "test:///default")
    assert got.xml.startswith("<domain")


@pytest.mark.parametrize("data,params,needle", [
    # well-formed (declared Latin-1), but libvirt takes UTF-8 only
    (b"<?xml version='1.0' encoding='ISO-8859-1'?><domain type='test'><name>caf\xe9</name>"
     b"</domain>", {}, "not UTF-8"),
    (b"<domain type='test'><name>sc2</name></domain>", {"hypervisor": "garbage"},
     "not a libvirt URI"),
    (b"<domain type='test'><name>sc3</name></domain>",
     {"hypervisor": "qemu+ssh://elsewhere/system"}, "fencing this host would not stop"),
])
def test_what_is_wrong_everywhere_is_6(write_config, state_dir, data, params, needle):
    cfg = write_config(data)
    meta = {"remote_node": "g1"} if "ssh" in params.get("hypervisor", "") else None
    with pytest.raises(ConfigError, match=needle):
        read_start_config(make_ctx("start", {"config": str(cfg), **params}, state_dir,
                                   meta=meta))
