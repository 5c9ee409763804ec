"""Write the agents' manual pages, ocf_custom_<Agent>(7), from metadata/<Agent>.xml.

The metadata stays the single source: every parameter (short and long description, type,
default, required/unique) and every action with its suggested timeout and interval come from
it, laid out as resource-agents lays out its ocf_heartbeat_*(7) pages, plus the examples and
notes an administrator needs (pcs, a guest node, the host-shutdown ordering files). The
section on switching a running resource from VirtualDomain is the admin's guide's own text
(docs/admin/switching.md, between its "man:begin" and "man:end" markers), converted here, so
the two cannot drift apart. Standard library only: it runs at package build time, before any
dependency is installed.

    python3 tools/gen_manpages.py --outdir build/man [--version V] [--date YYYY-MM-DD]
        [--unit-dir DIR] [metadata/PyVirtualDomain.xml ...]
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(0, os.path.join(ROOT, "tools"))

from version import project_version  # noqa: E402

PROVIDER = "custom"
OCF_DIR = "/usr/lib/ocf/resource.d/custom"
DATA_DIR = "/usr/share/pyvirtualdomain"
DROP_IN = "resource-agents-deps.target.d/50-pyvirtualdomain.conf"
STATE_DIR = "/run/resource-agents"
# The admin's guide page whose marked sections become sections of the man pages.
GUIDE_SECTIONS = os.path.join(ROOT, "docs", "admin", "switching.md")

# How each agent names what it manages, and an example config file for its examples.
NOUNS = {"PyLXCDomain": "container"}
EXAMPLE_IDS = {"PyLXCDomain": ("ct1", "/etc/pacemaker/ct1.xml")}
DEFAULT_NOUN = "domain"
DEFAULT_EXAMPLE = ("vm1", "/etc/pacemaker/vm1.xml")

# What each action does, in this project's words ({noun}: domain or container).
ACTION_TEXT = {
    "start": "Creates the {noun} (transient) from the config file and waits until it runs.",
    "stop": "Asks the {noun} to shut down, re-sending the request, then destroys it, then "
            "kills its processes when libvirt cannot; succeeds only when libvirt confirms the "
            "{noun} is gone, or libvirt is verifiably down and no process of it is left.",
    "status": "Same as monitor.",
    "monitor": "Checks whether the {noun} runs (0 running, 7 not running, 1 failed). A probe "
               "(interval 0) never reports an error for something it cannot know, and never "
               "says not running for something that may run. At depth 20 (OCF_CHECK_LEVEL=20 "
               "on the operation) it also pings the guest agent.",
    "migrate_to": "Runs on the source node: live-migrates the {noun} to the target node "
                  "(meta attribute migrate_target) and fails, leaving it here, when the "
                  "migration cannot finish within the timeout.",
    "migrate_from": "Runs on the target node after migrate_to: checks that the migrated "
                    "{noun} runs here.",
    "meta-data": "Prints the agent's metadata (needs nothing else, any user).",
    "validate-all": "Checks the parameters, the config file and the hypervisor URI without "
                    "touching the {noun}.",
}


@dataclass(frozen=True)
class Parameter:
    name: str
    shortdesc: str
    longdesc: str
    type: str
    default: str | None
    required: bool
    unique: bool


@dataclass(frozen=True)
class Action:
    name: str
    timeout: str | None
    interval: str | None
    depth: str | None


@dataclass(frozen=True)
class Agent:
    name: str
    shortdesc: str
    longdesc: str
    parameters: tuple[Parameter, ...]
    actions: tuple[Action, ...]


def _text(parent: ET.Element, tag: str) -> str:
    node = parent.find(tag)
    return (node.text or "").strip("\n") if node is not None else ""


def read_agent(path: str) -> Agent:
    root = ET.parse(path).getroot()
    params = []
    for p in root.iterfind("parameters/parameter"):
        content = p.find("content")
        params.append(Parameter(
            name=p.get("name", ""),
            shortdesc=_text(p, "shortdesc").strip(),
            longdesc=_text(p, "longdesc"),
            type=content.get("type", "string") if content is not None else "string",
            default=content.get("default") if content is not None else None,
            required=p.get("required") == "1",
            unique=p.get("unique") == "1"))
    actions = tuple(Action(a.get("name", ""), a.get("timeout"), a.get("interval"),
                           a.get("depth")) for a in root.iterfind("actions/action"))
    return Agent(name=root.get("name", ""), shortdesc=_text(root, "shortdesc").strip(),
                 longdesc=_text(root, "longdesc"), parameters=tuple(params), actions=actions)


# -- roff -----------------------------------------------------------------------------------

def esc(text: str) -> str:
    """Text for a roff text line: backslashes and hyphens escaped (hyphens in option names and
    paths must stay ASCII when copied from the rendered page)."""
    return text.replace("\\", "\\e").replace("-", "\\-")


def lines(text: str) -> list[str]:
    """Text lines of roff: a line that would start with a control character is protected, and
    an abbreviation at a line end does not end the sentence."""
    out = []
    for line in text.split("\n"):
        line = esc(line.strip())
        if line.startswith((".", "'")):
            line = "\\&" + line
        if re.search(r"\b(e\.g|i\.e|etc)\.$", line):
            line += "\\&"
        out.append(line)
    return out


def paragraphs(text: str) -> list[list[str]]:
    """The metadata's blank-line separated paragraphs, each as roff text lines."""
    paras = re.split(r"\n[ \t]*\n", text.strip("\n"))
    return [lines(p.strip("\n")) for p in paras if p.strip()]


def path(text: str) -> str:
    """A path in italics that may break after each slash (long paths overflow 80 columns)."""
    return "\\fI" + esc(text).replace("/", "/\\:") + "\\fR"


def quoted(arg: str) -> str:
    return '"' + arg.replace("\\", "\\e").replace('"', '\\(dq') + '"'


def example(cmd_lines: list[str]) -> list[str]:
    """A literal, unfilled block (commands), lines joined by a shell continuation."""
    out = [".PP", ".RS 4", ".nf"]
    for i, line in enumerate(cmd_lines):
        continued = i + 1 < len(cmd_lines) and cmd_lines[i + 1].startswith(" ")
        tail = " \\e" if continued else ""
        text = esc(line)
        if text.startswith((".", "'")):
            text = "\\&" + text
        out.append(text + tail)
    out += [".fi", ".RE"]
    return out


# -- sections written in the admin's guide ------------------------------------------------

_SECTION_RE = re.compile(r"<!-- man:begin (?P<title>[^>]*?) -->\n(?P<body>.*?)<!-- man:end -->",
                         re.S)


def guide_sections(path: str = GUIDE_SECTIONS) -> list[tuple[str, str]]:
    """The (title, Markdown text) of each section of the admin's guide marked for the man
    pages; ValueError when there is none (the page would silently lose it)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    found = [(m.group("title").strip(), m.group("body")) for m in _SECTION_RE.finditer(text)]
    if not found:
        raise ValueError(f"{path}: no section between <!-- man:begin TITLE --> and "
                         "<!-- man:end -->")
    return found


def for_agent(text: str, agent: str, rsc: str) -> str:
    """The guide's text (written for PyVirtualDomain and resource vm1) for ``agent``, whose
    examples name resource ``rsc``."""
    return re.sub(r"\bvm1\b", rsc, text.replace("PyVirtualDomain", agent))


_INLINE_RE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*")
_LINK_RE = re.compile(r"\[([^\]]+)\]\([^)]*\)")


def inline(text: str) -> str:
    """One line of Markdown text as roff: `code` and **bold** in bold, links as their text."""
    text = _LINK_RE.sub(r"\1", text)
    out, last = [], 0
    for m in _INLINE_RE.finditer(text):
        out.append(esc(text[last:m.start()]))
        out.append("\\fB" + esc(m.group(1) or m.group(2)) + "\\fR")
        last = m.end()
    out.append(esc(text[last:]))
    line = "".join(out)
    return "\\&" + line if line.startswith((".", "'")) else line


def markdown_roff(text: str) -> list[str]:
    """The Markdown the guide's marked sections use, as roff: paragraphs, "- " bullets and
    fenced code blocks (shown as they are written). Anything else (headings, tables, numbered
    lists) raises ValueError: it would not render as written."""
    out: list[str] = []
    lines_in = text.strip("\n").split("\n")
    i = 0
    while i < len(lines_in):
        line = lines_in[i]
        if not line.strip():
            i += 1
            continue
        if line.startswith("```"):
            end = next((j for j in range(i + 1, len(lines_in))
                        if lines_in[j].startswith("```")), None)
            if end is None:
                raise ValueError(f"unterminated code block: {line!r}")
            out += [".PP", ".RS 4", ".nf"]
            for code in lines_in[i + 1:end]:
                code = esc(code)
                out.append("\\&" + code if code.startswith((".", "'")) else code)
            out += [".fi", ".RE"]
            i = end + 1
            continue
        if re.match(r"\s*(#|\||\d+\.\s|[*+]\s|>)", line):
            raise ValueError(f"Markdown not supported in a man page section: {line!r}")
        block = []
        while i < len(lines_in) and lines_in[i].strip() and \
                not lines_in[i].startswith("```"):
            block.append(lines_in[i])
            i += 1
        for item in re.split(r"\n(?=- )", "\n".join(block)):
            words = [inline(w.strip()) for w in item.split("\n")]
            if item.startswith("- "):
                words[0] = inline(item.split("\n")[0][2:].strip())
                out += [".IP \\(bu 2", *words]
            else:
                out += [".PP", *words]
    return out


# -- the page -------------------------------------------------------------------------------

def param_facts(p: Parameter) -> str:
    facts = []
    if p.unique:
        facts.append("unique")
    facts.append("required" if p.required else "optional")
    facts.append(p.type)
    facts.append(f"default {p.default}" if p.default else "no default")
    return "(" + ", ".join(facts) + ")"


def action_facts(a: Action) -> str:
    facts = []
    if a.timeout:
        facts.append(f"Suggested minimum timeout: {a.timeout}.")
    if a.interval:
        facts.append(f"Suggested interval: {a.interval}.")
    if a.depth is not None:
        facts.append(f"Depth (OCF_CHECK_LEVEL): {a.depth}.")
    return " ".join(facts)


def render(agent: Agent, version: str, date: str, unit_dir: str,
           sections: list[tuple[str, str]] | None = None) -> str:
    """The page; ``sections``: (title, Markdown) from the admin's guide, placed after the
    examples."""
    noun = NOUNS.get(agent.name, DEFAULT_NOUN)
    rsc, config = EXAMPLE_IDS.get(agent.name, DEFAULT_EXAMPLE)
    full = f"ocf:{PROVIDER}:{agent.name}"
    page = f"ocf_{PROVIDER}_{agent.name}"
    names = [a.name for a in agent.actions]
    migrates = "migrate_to" in names
    monitor = next((a for a in agent.actions if a.name == "monitor"), None)
    out = [
        f".\\\" Generated from metadata/{agent.name}.xml by tools/gen_manpages.py: edit those.",
        f".TH {quoted(page.upper())} 7 {quoted(date)} {quoted('pyvirtualdomain ' + version)} "
        f"{quoted('OCF agents')}",
        ".nh",
        ".ad l",
        ".SH NAME",
        f"{esc(page)} \\- {esc(agent.shortdesc)}",
        ".SH SYNOPSIS",
        f"\\fB{esc(agent.name)}\\fR [{' | '.join(esc(n) for n in dict.fromkeys(names))}]",
        ".SH DESCRIPTION",
    ]
    for para in paragraphs(agent.longdesc):
        out += [".PP", *para]
    out += [".PP",
            f"Pacemaker runs the agent as \\fB{esc(full)}\\fR; it is installed as "
            f"{path(OCF_DIR + '/' + agent.name)} and runs with the python3 its first line "
            "names (the system's /usr/bin/python3 in the packages).",
            ".SH SUPPORTED PARAMETERS"]
    for p in agent.parameters:
        out += [".PP", f"\\fB{esc(p.name)}\\fR", ".RS 4"]
        if p.shortdesc:
            out += [f"\\fI{esc(p.shortdesc)}\\fR", ".sp"]
        for j, para in enumerate(paragraphs(p.longdesc)):
            out += ([".sp"] if j else []) + para
        out += [".sp", esc(param_facts(p)), ".RE"]
    out += [".SH SUPPORTED ACTIONS", ".PP",
            "This resource agent supports the following actions (operations):"]
    for name in dict.fromkeys(names):  # an action listed at several depths: one entry
        text = ACTION_TEXT.get(name, "").format(noun=noun)
        facts = [action_facts(a) for a in agent.actions if a.name == name]
        out += [".PP", f"\\fB{esc(name)}\\fR", ".RS 4"]
        out += lines(" ".join(t for t in (text, *facts) if t))
        out += [".RE"]

    required = [p for p in agent.parameters if p.required]
    args = [f"  {p.name}={config if p.name == 'config' else p.type.upper()}" for p in required]
    ops = []
    if monitor is not None:
        ops.append(f"  op monitor interval={monitor.interval or '10s'} "
                   f"timeout={monitor.timeout or '30s'}")
    pcs = [f"pcs resource create {rsc} {full}", *args]
    if migrates:
        pcs.append("  meta allow-migrate=true")
    pcs += ops
    out += [".SH EXAMPLE PCS", ".PP",
            f"A {noun} resource created with \\fBpcs\\fR(8); the operations not named get the "
            "timeouts above:"]
    out += example(pcs)
    out += [".PP", "The parameters and the default operations, as pcs reads them:"]
    out += example([f"pcs resource describe {full}"])

    crm_ops = ops[0] if ops else ""
    crm = [f"primitive {rsc} {full}", f"  params config={config}"]
    if migrates:
        crm.append("  meta allow-migrate=true")
    if crm_ops:
        crm.append(crm_ops)
    out += [".SH EXAMPLE CRM SHELL", ".PP", "The same resource with \\fBcrm\\fR(8):"]
    out += example(crm)

    guest, addr = "guest1", "192.0.2.11"
    out += [".SH GUEST NODE EXAMPLE", ".PP",
            f"A {noun} that runs pacemaker\\-remoted becomes a guest node through the meta "
            f"attribute \\fBremote\\-node\\fR of its resource (and \\fBremote\\-addr\\fR when "
            f"the node name does not resolve to the guest). With pcs, create the resource and "
            f"then add the guest node, which sets those meta attributes (pcs refuses "
            f"\\fBmeta remote\\-node=\\fR on \\fBresource create\\fR and asks for this "
            f"command):"]
    out += example([f"pcs resource create {rsc} {full}", f"  config={config}",
                    f"pcs cluster node add-guest {guest} {rsc} remote-addr={addr}"])
    out += [".PP", "With the crm shell, or any tool that writes the CIB, the meta attributes "
            "are set directly:"]
    gcrm = [f"primitive {rsc} {full}", f"  params config={config}",
            f"  meta remote-node={guest} remote-addr={addr}"]
    if crm_ops:
        gcrm.append(crm_ops)
    out += example(gcrm)
    out += [".PP",
            f"Pacemaker then fences {guest} by stopping or restarting {rsc}. Keep other "
            f"{noun} resources off guest nodes (no libvirt runs there), for example with a "
            "location constraint of score \\-INFINITY."]

    for title, body in sections or ():
        out += [f".SH {esc(title.upper())}", *markdown_roff(for_agent(body, agent.name, rsc))]

    out += [".SH HOST SHUTDOWN ORDERING", ".PP",
            "On a systemd host the packages (and \\fBmake install\\fR) install the drop-in",
            f"{path(unit_dir + '/' + DROP_IN)}.",
            "pacemaker.service is ordered after resource\\-agents\\-deps.target, and systemd "
            "stops units in the reverse of their start order; the drop-in orders that target "
            "after libvirt's daemons and sockets (monolithic libvirtd and the modular virtqemud, "
            "virtlxcd and the others, virtlogd, virtlockd), after libvirt\\-guests.service and "
            "after virt\\-guest\\-shutdown.target, and makes the target want "
            "virt\\-guest\\-shutdown.target. So at shutdown or reboot Pacemaker stops first "
            f"and migrates or stops every {noun} while libvirt still runs; only then does "
            "libvirt\\-guests act on whatever guests remain, and systemd stop the guests' "
            "machine scopes (ordered before virt\\-guest\\-shutdown.target by libvirt) and "
            "libvirt's daemons.",
            ".PP",
            "Ordering is only ordering: nothing is started that the host does not start "
            "anyway, except the empty virt\\-guest\\-shutdown.target. The effective ordering "
            "shows with:"]
    out += example(["systemctl show -p After -p Wants resource-agents-deps.target",
                    "systemd-analyze verify pacemaker.service"])
    out += [".PP",
            "Hosts without systemd need nothing: stop Pacemaker before libvirt in the init "
            "scripts' order."]

    out += [".SH FILES",
            ".TP", path(f"{OCF_DIR}/{agent.name}"), "The agent.",
            ".TP", path(f"{DATA_DIR}/{agent.name}.xml"),
            "Its metadata (what \\fBmeta\\-data\\fR prints).",
            ".TP", path(f"{unit_dir}/{DROP_IN}"),
            esc("The host-shutdown ordering drop-in (see above)."),
            ".TP", path(f"{STATE_DIR}/{agent.name}-") + "INSTANCE" + path(".state"),
            f"What the agent remembers of the {noun} it started (HA_RSCTMP)."]
    out += [".SH SEE ALSO",
            ".PP",
            "\\fBpcs\\fR(8), \\fBcrm_resource\\fR(8), \\fBocf_heartbeat_VirtualDomain\\fR(7), "
            "\\fBvirsh\\fR(1), \\fBlibvirt\\-guests\\fR(8), \\fBsystemd.unit\\fR(5)"]
    return "\n".join(out) + "\n"


def build_date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.UTC) if epoch
            else datetime.datetime.now(datetime.UTC))
    return when.strftime("%Y-%m-%d")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--version", default=None)
    ap.add_argument("--date", default=None, help="default: SOURCE_DATE_EPOCH, else today")
    ap.add_argument("--unit-dir", default="/usr/lib/systemd/system",
                    help="where the ordering drop-in is installed (named in the page)")
    ap.add_argument("metadata", nargs="*",
                    default=[os.path.join(ROOT, "metadata", f"{a}.xml")
                             for a in ("PyVirtualDomain", "PyLXCDomain")])
    args = ap.parse_args(argv)
    version = args.version or project_version()
    date = args.date or build_date()
    os.makedirs(args.outdir, exist_ok=True)
    sections = guide_sections()
    for path in args.metadata:
        agent = read_agent(path)
        target = os.path.join(args.outdir, f"ocf_{PROVIDER}_{agent.name}.7")
        with open(target + ".tmp", "w", encoding="utf-8") as f:
            f.write(render(agent, version, date, args.unit_dir.rstrip("/"), sections))
        os.replace(target + ".tmp", target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
