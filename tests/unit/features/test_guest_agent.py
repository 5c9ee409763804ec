"""The guest agent check (OCF_CHECK_LEVEL=20): its miss counting. The ping itself is a libvirt
call on a real guest with a real qemu-guest-agent (tests/integration/test_guest_health.py);
here a stand-in domain answers or not, as told."""

from __future__ import annotations

import io

import pytest

from pyvirtualdomain.core import record
from pyvirtualdomain.core.record import ConfigStamp
from pyvirtualdomain.errors import AgentError, GuestNotResponding, UnsupportedOperation
from pyvirtualdomain.features.guest_agent import check_guest_agent
from pyvirtualdomain.virt.domxml import DomainIdentity

from ..conftest import make_ctx


class StandIn:
    """A domain whose guest agent answers while ``answers`` says so."""

    name = "ga1"

    def __init__(self) -> None:
        self.answers = True
        self.error: Exception = GuestNotResponding("Guest agent is not responding")

    def agent_ping(self, timeout_s: float) -> None:
        if not self.answers:
            raise self.error


@pytest.fixture
def ctx(state_dir):
    log = io.StringIO()
    c = make_ctx("monitor", {"config": "/x.xml", "guest_agent_misses": "3"}, state_dir,
                 meta={"interval": "10000", "timeout": "30000"},
                 environ={"OCF_CHECK_LEVEL": "20"}, stream=log)
    record.save(c.record_path, record.new_record(DomainIdentity("ga1", None, "qemu"), None,
                                                 "qemu:///system", ConfigStamp("/x.xml", 1, 1),
                                                 None))
    c.test_log = log  # type: ignore[attr-defined]
    return c


def test_one_miss_logs_and_the_limit_fails(ctx):
    dom = StandIn()
    check_guest_agent(ctx, dom, ctx.deadline("monitor"))  # answers
    dom.answers = False
    for miss in (1, 2):
        check_guest_agent(ctx, dom, ctx.deadline("monitor"))
        assert f"({miss} of 3 misses" in ctx.test_log.getvalue()
    with pytest.raises(AgentError, match="did not answer 3 monitors in a row"):
        check_guest_agent(ctx, dom, ctx.deadline("monitor"))


def test_an_answer_resets_the_count(ctx):
    dom = StandIn()
    dom.answers = False
    check_guest_agent(ctx, dom, ctx.deadline("monitor"))
    check_guest_agent(ctx, dom, ctx.deadline("monitor"))
    dom.answers = True
    check_guest_agent(ctx, dom, ctx.deadline("monitor"))
    assert "answers again after 2 miss(es)" in ctx.test_log.getvalue()
    dom.answers = False
    check_guest_agent(ctx, dom, ctx.deadline("monitor"))
    check_guest_agent(ctx, dom, ctx.deadline("monitor"))  # 2 of 3: still no failure


def test_a_new_start_starts_a_new_count(ctx):
    dom = StandIn()
    dom.answers = False
    check_guest_agent(ctx, dom, ctx.deadline("monitor"))
    check_guest_agent(ctx, dom, ctx.deadline("monitor"))
    rec = record.load(ctx.record_path)
    record.save(ctx.record_path, rec._replace(started_at=rec.started_at + 60))
    check_guest_agent(ctx, dom, ctx.deadline("monitor"))  # 1 of 3 for this start
    assert "(1 of 3 misses" in ctx.test_log.getvalue().splitlines()[-1]


def test_no_agent_channel_only_warns(ctx):
    dom = StandIn()
    dom.answers = False
    dom.error = UnsupportedOperation("QEMU guest agent is not configured")
    for _ in range(5):
        check_guest_agent(ctx, dom, ctx.deadline("monitor"))
    assert "the check cannot work" in ctx.test_log.getvalue()


def test_stop_forgets_the_count(ctx):
    dom = StandIn()
    dom.answers = False
    check_guest_agent(ctx, dom, ctx.deadline("monitor"))
    count = record.sibling(ctx.record_path, record.AGENT_MISSES_SUFFIX)
    import os

    assert os.path.exists(count)
    record.remove(ctx.record_path)
    assert not os.path.exists(count)
