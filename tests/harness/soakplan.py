"""The randomized fault soak's schedule (tests/cluster/soak.py): a seeded list of events drawn
from a menu of faults, made before the run and independent of it, so a failing seed replays
the same schedule.

Nothing here touches the cluster. Targets are named relative to the cluster's state at the
moment the event fires ("the node that runs vm-guest1", "pcmk-2"); the soak resolves them
then, and skips an event whose target is not there (a node already down, a resource not
running), saying why in its report.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

# The resources of the soak: guest1 (a KVM-style guest node VM), guest2 (a container guest
# node) and a plain VM that is no guest node.
VM_GUEST1 = "vm-guest1"
VM_GUEST2 = "vm-guest2"
VM_PLAIN = "vm-plain"
VM_RESOURCES = (VM_GUEST1, VM_GUEST2, VM_PLAIN)
QEMU_RESOURCES = (VM_GUEST1, VM_PLAIN)
GUEST_NODES = {"guest1": VM_GUEST1, "guest2": VM_GUEST2}
NODES = ("pcmk-1", "pcmk-2")

# Hang longer than this (the longest monitor timeout of a qemu resource, s): the recurring
# monitor (or the guest's remote connection) must notice.
MONITOR_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Kind:
    name: str
    weight: float
    what: str  # one line for the report


# The menu. Weights: how often each is drawn, relative to the others.
MENU: tuple[Kind, ...] = (
    Kind("migrate", 3.0, "crm_resource --move of a VM resource to the other node (live "
                         "migration; the container moves by stop and start), --clear after"),
    Kind("standby", 2.0, "a node in standby, back online after a while"),
    Kind("power_cut", 1.5, "every process of a node killed at once; Pacemaker fences it "
                           "(fence_pyvd powers it on again)"),
    Kind("libvirtd_kill", 1.5, "libvirtd SIGKILLed on a node, restarted after a while"),
    Kind("libvirtd_freeze", 1.5, "libvirtd SIGSTOPped on a node, continued after a while"),
    Kind("qemu_kill", 2.0, "the emulator of a guest SIGKILLed (qemu; the container's "
                           "libvirt_lxc controller and everything below it)"),
    Kind("guest_hang", 1.5, "a guest's qemu SIGSTOPped longer than the monitor timeout, "
                            "then continued"),
    Kind("remoted_kill", 1.5, "pacemaker-remoted SIGKILLed inside a guest node"),
    Kind("qga_kill", 1.0, "qemu-guest-agent killed inside the plain VM (its "
                          "OCF_CHECK_LEVEL=20 monitor)"),
    Kind("link_cut", 1.0, "the link between the nodes cut (corosync loses the peer; both "
                          "fence, one survives), restored after a while"),
    Kind("pcmk_restart", 1.0, "Pacemaker stopped cleanly on a node (SIGTERM to pacemakerd), "
                              "started again after a while"),
    Kind("rsctmp_fill", 1.0, "HA_RSCTMP (/run/resource-agents) of a node filled up, emptied "
                             "after a while"),
)
KINDS = {k.name: k for k in MENU}


@dataclass(frozen=True)
class Event:
    """One scheduled event. ``node``: "host-of:<rsc>" (the node running that resource when
    the event fires), "other-of:<rsc>" or a node name; ``rsc``: the resource acted on;
    ``hold_s``: how long the fault lasts before it is undone (0: nothing to undo);
    ``overlap``: the next event fires ``gap_s`` after this one, without waiting for the
    cluster to settle; otherwise the next one waits for the cluster to settle (every guest
    back), then ``gap_s`` more."""

    index: int
    kind: str
    node: str | None = None
    rsc: str | None = None
    hold_s: float = 0.0
    overlap: bool = False
    gap_s: float = 0.0

    def describe(self) -> str:
        parts = [self.kind]
        if self.rsc:
            parts.append(self.rsc)
        if self.node:
            parts.append(f"node={self.node}")
        if self.hold_s:
            parts.append(f"hold={self.hold_s:g}s")
        if self.overlap:
            parts.append(f"overlap(next after {self.gap_s:g}s)")
        return " ".join(parts)


@dataclass(frozen=True)
class Schedule:
    seed: int
    overlap_probability: float
    events: tuple[Event, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "overlap_probability": self.overlap_probability,
                "events": [asdict(e) for e in self.events]}


def _r(x: float) -> float:
    return round(x, 1)


def _node(rng: random.Random, rsc_pool: tuple[str, ...] = VM_RESOURCES) -> str:
    """Mostly the node that runs some guest (where a fault hurts), sometimes a fixed one."""
    if rng.random() < 0.7:
        return f"host-of:{rng.choice(rsc_pool)}"
    return rng.choice(NODES)


def _event(rng: random.Random, index: int, kind: str) -> Event:
    if kind == "migrate":
        return Event(index, kind, rsc=rng.choice((VM_GUEST1, VM_GUEST1, VM_PLAIN, VM_PLAIN,
                                                  VM_GUEST2)), hold_s=60.0)
    if kind == "standby":
        return Event(index, kind, node=_node(rng), hold_s=_r(rng.uniform(5, 30)))
    if kind == "power_cut":
        return Event(index, kind, node=_node(rng))
    if kind == "libvirtd_kill":
        return Event(index, kind, node=_node(rng), hold_s=_r(rng.uniform(0, 20)))
    if kind == "libvirtd_freeze":
        return Event(index, kind, node=_node(rng), hold_s=_r(rng.uniform(5, 40)))
    if kind == "qemu_kill":
        return Event(index, kind, rsc=rng.choice(VM_RESOURCES))
    if kind == "guest_hang":
        return Event(index, kind, rsc=rng.choice(QEMU_RESOURCES),
                     hold_s=_r(MONITOR_TIMEOUT_S + rng.uniform(5, 20)))
    if kind == "remoted_kill":
        return Event(index, kind, rsc=rng.choice(tuple(GUEST_NODES.values())))
    if kind == "qga_kill":
        return Event(index, kind, rsc=VM_PLAIN)
    if kind == "link_cut":
        return Event(index, kind, hold_s=_r(rng.uniform(5, 20)))
    if kind == "pcmk_restart":
        return Event(index, kind, node=_node(rng), hold_s=_r(rng.uniform(0, 15)))
    if kind == "rsctmp_fill":
        return Event(index, kind, node=_node(rng), hold_s=_r(rng.uniform(15, 45)))
    raise ValueError(f"unknown event kind {kind!r}")


def make_schedule(seed: int, events: int, kinds: tuple[str, ...] | None = None) -> Schedule:
    """The schedule of ``seed``: ``events`` events drawn from the menu (or from ``kinds``
    only), and the probability that an event overlaps the next one, itself drawn from the
    seed (0.1-0.35). The same arguments give the same schedule, always."""
    if events < 0:
        raise ValueError("events must be >= 0")
    menu = [KINDS[k] for k in kinds] if kinds else list(MENU)
    rng = random.Random(seed)
    p_overlap = round(rng.uniform(0.10, 0.35), 3)
    out: list[Event] = []
    for i in range(events):
        kind = rng.choices([k.name for k in menu], weights=[k.weight for k in menu])[0]
        ev = _event(rng, i, kind)
        overlap = rng.random() < p_overlap
        gap = _r(rng.uniform(1, 10)) if overlap else _r(rng.uniform(0, 5))
        out.append(Event(ev.index, ev.kind, ev.node, ev.rsc, ev.hold_s, overlap, gap))
    return Schedule(seed=seed, overlap_probability=p_overlap, events=tuple(out))


def schedule_from_json(data: dict[str, Any]) -> Schedule:
    return Schedule(seed=int(data["seed"]),
                    overlap_probability=float(data["overlap_probability"]),
                    events=tuple(Event(**e) for e in data["events"]))
