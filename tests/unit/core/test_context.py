"""The action context: its deadline, the hypervisor URI it uses, parameter problems."""

from __future__ import annotations

import io

import pytest

from pyvirtualdomain.core.context import ACTION_MARGIN_S, require_valid_params, warn_params
from pyvirtualdomain.errors import ConfigError
from pyvirtualdomain.virt.domxml import DomainIdentity

from ..conftest import make_ctx


def test_deadline_is_the_op_timeout_less_the_margin(state_dir):
    ctx = make_ctx("stop", {"config": "/x.xml"}, state_dir, meta={"timeout": "30000"})
    assert ctx.deadline("stop").total == pytest.approx(30.0 - ACTION_MARGIN_S)
    # a short timeout keeps at most 10% back
    short = make_ctx("stop", {"config": "/x.xml"}, state_dir, meta={"timeout": "5000"})
    assert short.deadline("stop").total == pytest.approx(4.5)
    # no timeout given: the metadata's
    none = make_ctx("stop", {"config": "/x.xml"}, state_dir)
    assert none.deadline("stop").total == pytest.approx(90.0 - ACTION_MARGIN_S)


def test_uri_the_parameter_first_then_libvirt_default(state_dir):
    ident = DomainIdentity("d", None, "lxc")
    ctx = make_ctx("monitor", {"config": "/x.xml", "hypervisor": "qemu:///system"}, state_dir)
    assert ctx.hypervisor_for(ident).uri == "qemu:///system"
    ctx = make_ctx("monitor", {"config": "/x.xml"}, state_dir,
                   environ={"LIBVIRT_DEFAULT_URI": "test:///default"})
    assert ctx.hypervisor_for(ident).uri == "test:///default"


def test_parameter_problems_refuse_or_warn(state_dir):
    ctx = make_ctx("start", {"config": "/x.xml", "shutdown_mode": "hibernate"}, state_dir)
    with pytest.raises(ConfigError, match="shutdown_mode"):
        require_valid_params(ctx)
    log = io.StringIO()
    ctx = make_ctx("stop", {"config": "/x.xml", "shutdown_mode": "hibernate"}, state_dir,
                   stream=log)
    warn_params(ctx)
    assert "shutdown_mode" in log.getvalue() and "using the default" in log.getvalue()
    # a boolean that is neither true nor false is false, with a warning, never refused
    log = io.StringIO()
    ctx = make_ctx("start", {"config": "/x.xml", "force_stop": "maybe"}, state_dir, stream=log)
    require_valid_params(ctx)
    assert "force_stop='maybe' is taken as false" in log.getvalue()
