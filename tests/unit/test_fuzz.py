"""Arbitrary input never crashes the agent: it gives an exit code and a reason."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyvirtualdomain.cli import main
from pyvirtualdomain.errors import AgentError
from pyvirtualdomain.metadata import load_schema
from pyvirtualdomain.ocf import OCFExit
from pyvirtualdomain.params import build_params
from pyvirtualdomain.virt.domxml import parse_identity

SCHEMA = load_schema("PyVirtualDomain")
names = st.one_of(st.sampled_from(sorted(SCHEMA.parameters)), st.text(min_size=1, max_size=20))


@given(st.dictionaries(names, st.text(max_size=40), max_size=6))
def test_params_never_raise(raw):
    p = build_params(raw, SCHEMA)
    assert isinstance(p.force_stop, bool)
    assert all(isinstance(x, str) and x for x in p.problems + p.migration_problems())


xml_like = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda t, n, u, extra: (
        f"<domain type='{t}'><name>{n}</name><uuid>{u}</uuid>{extra}</domain>").encode(),
        st.text(max_size=8), st.text(max_size=12), st.text(max_size=40),
        st.text(max_size=20)),
)


@given(xml_like)
def test_xml_reading_gives_identity_or_agent_error(data):
    try:
        ident = parse_identity(data, "/fuzz.xml")
    except AgentError as exc:
        assert exc.rc in (OCFExit.ERR_CONFIGURED, OCFExit.ERR_INSTALLED)
        assert "\n" not in exc.reason and "/fuzz.xml" in exc.reason
    else:
        assert ident.name and ident.virt_type


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])


@given(data=xml_like, action=st.sampled_from(["validate-all", "monitor", "stop", "start"]),
       extra=st.dictionaries(st.sampled_from(["force_stop", "shutdown_mode", "hypervisor"]),
                             st.text(max_size=30), max_size=3))
def test_cli_answers_every_config_with_a_code(tmp_path_factory, data, action, extra):
    d = tmp_path_factory.mktemp("fuzz")
    cfg = Path(d) / "vm.xml"
    cfg.write_bytes(data)
    env = {"OCF_RESKEY_config": str(cfg), "HA_RSCTMP": str(d),
           # never reach a real hypervisor from a fuzz case
           "OCF_RESKEY_hypervisor": "test:///default",
           **{f"OCF_RESKEY_{k}": v for k, v in extra.items() if k != "hypervisor"}}
    err = io.StringIO()
    rc = main([action], env, out=io.StringIO(), err=err)
    assert rc in set(OCFExit)
    assert "Traceback" not in err.getvalue() and "internal error" not in err.getvalue()
    reason_lines = [x for x in err.getvalue().splitlines() if x.startswith("ocf-exit-reason:")]
    assert len(reason_lines) == (0 if rc == 0 else 1)
