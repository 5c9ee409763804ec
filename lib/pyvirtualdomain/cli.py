"""Command line: the OCF entry point. The only module that writes to stdout or exits."""

from __future__ import annotations

import os
import sys

# meta-data must cost little more than the interpreter: this module imports nothing at load
# time beyond os and sys (not even typing); the rest is imported by the actions that use it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import TextIO

    from .metadata import ParameterSpec

# OCF exit codes used before ocf.py is loaded (same values as ocf.OCFExit).
RC_SUCCESS, RC_ERR_ARGS, RC_ERR_UNIMPLEMENTED, RC_ERR_INSTALLED = 0, 2, 3, 5
# What Pacemaker looks for on stderr (resource-agents honours OCF_EXIT_REASON_PREFIX too).
EXIT_REASON_PREFIX = "ocf-exit-reason:"
RC_NAMES = {0: "SUCCESS", 1: "ERR_GENERIC", 2: "ERR_ARGS", 3: "ERR_UNIMPLEMENTED", 4: "ERR_PERM",
            5: "ERR_INSTALLED", 6: "ERR_CONFIGURED", 7: "NOT_RUNNING"}

ACTIONS_HELP = {
    "start": "start the domain (transient) and wait until it runs",
    "stop": "shut the domain down (graceful, then destroy, then kill), inside the timeout",
    "monitor": "0 running, 7 not running, 1 failed (interval 0 or unset: a probe)",
    "status": "same as monitor",
    "validate-all": "check parameters and the config file",
    "migrate_to": "live-migrate the domain to OCF_RESKEY_CRM_meta_migrate_target",
    "migrate_from": "wait until the migrated domain runs here",
    "meta-data": "print the OCF metadata",
    "usage": "print this help",
}

USAGE = """usage: {agent} ACTION [options]

Normally run by Pacemaker with parameters in OCF_RESKEY_* variables. By hand:
  --NAME VALUE | --NAME=VALUE   set parameter NAME (e.g. --config /etc/vm.xml)
  -o NAME=VALUE                 set parameter NAME (as ocf-tester does)
  --timeout SECONDS             op timeout (OCF_RESKEY_CRM_meta_timeout)
  --interval SECONDS            monitor interval (0 or unset: probe)
  -v, --verbose                 show the log on a terminal (-vv: debug lines)
  -h, --help                    this help

Actions:
{actions}

Parameters (from the metadata):
{params}
"""


class UsageError(Exception):
    pass


class Args:
    def __init__(self) -> None:
        self.action: str | None = None
        self.params: dict[str, str] = {}
        self.meta: dict[str, str] = {}
        self.verbose = 0
        self.help = False


# The longest op timeout or interval accepted by hand (a day): Pacemaker's own are far less.
MAX_SECONDS = 86400.0


def _seconds_to_ms(option: str, value: str) -> str:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    # float() also takes "inf", "nan" and "1e999": none of them is a duration
    if not 0 <= seconds <= MAX_SECONDS:
        raise UsageError(f"{option} takes a number of seconds from 0 to {MAX_SECONDS:.0f}, "
                         f"not {value!r}")
    return str(int(seconds * 1000))


def parse_args(argv: Sequence[str]) -> Args:
    args = Args()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1

        def value(option: str = arg) -> str:
            nonlocal i
            if i >= len(argv):
                raise UsageError(f"option {option} needs a value")
            i += 1
            return argv[i - 1]

        if arg in ("-h", "--help"):
            args.help = True
        elif arg in ("-v", "--verbose"):
            args.verbose += 1
        elif arg == "-vv":
            args.verbose += 2
        elif arg == "-o":
            name, sep, val = value().partition("=")
            if not sep or not name:
                raise UsageError("-o takes NAME=VALUE")
            args.params[name] = val
        elif arg.startswith("--"):
            name, sep, val = arg[2:].partition("=")
            if not sep:
                val = value()
            if name == "timeout":
                args.meta["timeout"] = _seconds_to_ms("--timeout", val)
            elif name == "interval":
                args.meta["interval"] = _seconds_to_ms("--interval", val)
            elif name:
                args.params[name.replace("-", "_")] = val
            else:
                raise UsageError("empty option name")
        elif args.action is None:
            args.action = arg
        # Further positional arguments are ignored, as OCF asks.
    return args


HELP_WIDTH = 100


def _parameter_table(parameters: Sequence[ParameterSpec]) -> str:
    """NAME TYPE DEFAULT DESCRIPTION in aligned columns; an unset default is blank; a long
    description wraps under its column."""
    import textwrap

    rows = [("NAME", "TYPE", "DEFAULT", "DESCRIPTION")] + [
        (p.name, p.type, p.default or "", p.shortdesc) for p in parameters]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    indent = 2 + sum(w + 2 for w in widths)
    lines = []
    for row in rows:
        head = "  " + "".join(cell.ljust(w + 2) for cell, w in zip(row, widths, strict=False))
        wrapped = textwrap.wrap(row[3], max(20, HELP_WIDTH - indent)) or [""]
        lines.append(head + wrapped[0])
        lines += [" " * indent + more for more in wrapped[1:]]
    return "\n".join(line.rstrip() for line in lines)


def _print_usage(agent: str, out: TextIO) -> None:
    from .metadata import load_schema

    acts = "\n".join(f"  {a:<14}{h}" for a, h in ACTIONS_HELP.items())
    try:
        params = _parameter_table(list(load_schema(agent).parameters.values()))
    except (OSError, ValueError) as exc:
        params = f"  (metadata unavailable: {exc})"
    out.write(USAGE.format(agent=agent, actions=acts, params=params))


def _meta_data(agent: str, out: TextIO) -> int:
    from .locate import metadata_path

    try:
        with open(metadata_path(agent), "rb") as f:
            data = f.read()
    except OSError as exc:
        sys.stderr.write(f"{EXIT_REASON_PREFIX}cannot read the metadata: {exc}\n")
        return RC_ERR_INSTALLED
    out.flush()
    if hasattr(out, "buffer"):
        out.buffer.write(data)
    else:
        out.write(data.decode())
    return RC_SUCCESS


def _report(rc: int, reason: str, interactive: bool, err: TextIO,
            environ: Mapping[str, str] | None = None) -> None:
    if rc != RC_SUCCESS:
        text = reason or RC_NAMES.get(rc, str(rc))
        prefix = (environ or {}).get("OCF_EXIT_REASON_PREFIX") or EXIT_REASON_PREFIX
        # One line, whatever the reason contained.
        err.write(f"{prefix}{' '.join(text.split())}\n")
    if interactive:
        name = RC_NAMES.get(rc, str(rc))
        err.write(f"{name} (rc={rc}){': ' + reason if reason else ''}\n")
    err.flush()


def main(argv: Sequence[str], environ: Mapping[str, str], agent: str = "PyVirtualDomain",
         out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    interactive = err.isatty()
    try:
        args = parse_args(argv)
    except UsageError as exc:
        _report(RC_ERR_ARGS, str(exc), interactive, err, environ)
        return RC_ERR_ARGS

    if args.action == "meta-data":
        return _meta_data(agent, out)
    if args.help or args.action in ("usage", "help"):
        _print_usage(agent, out)
        return RC_SUCCESS
    if args.action is None:
        _print_usage(agent, err)
        _report(RC_ERR_ARGS, "no action given", interactive, err, environ)
        return RC_ERR_ARGS

    return _run_action(args, environ, agent, interactive, err)


def _run_action(args: Args, environ: Mapping[str, str], agent: str, interactive: bool,
                err: TextIO) -> int:
    from .actions import load
    from .core.context import Context
    from .errors import AgentError
    from .log import DEFAULT_DATEFMT, Log, open_trace, trace_destination
    from .metadata import load_schema
    from .ocf import META_PREFIX, OCFEnv, OCFExit
    from .params import build_params
    from .profiles import PROFILES

    assert args.action is not None
    merged = dict(environ)
    for key, val in args.meta.items():
        merged[META_PREFIX + key] = val
    if not merged.get("OCF_RESOURCE_INSTANCE"):
        # By hand: every domain its own state record and owner tag, never one shared by all.
        config = args.params.get("config") or merged.get("OCF_RESKEY_config", "")
        merged["OCF_RESOURCE_INSTANCE"] = by_hand_instance(config) or agent
    env = OCFEnv.from_environ(args.action, merged, args.params, agent)
    show_log = (not interactive) or args.verbose > 0
    trace = None
    trace_to = trace_destination(env.framework, merged, agent, env.instance, env.action,
                                 interactive)
    if trace_to is not None:
        trace = open_trace(trace_to, merged)
        if trace is None:
            err.write(f"{agent}({env.instance}): WARNING: trace {trace_to} not writable, "
                      "trace not going to happen\n")
    log = Log(agent, env.instance, err if show_log else None,
              debug=env.debug or args.verbose > 1, facility=env.log_facility, trace=trace,
              logfile=merged.get("HA_LOGFILE"), debuglog=merged.get("HA_DEBUGLOG"),
              datefmt=merged.get("HA_DATEFMT") or DEFAULT_DATEFMT)
    try:
        schema = load_schema(agent)
    except (OSError, ValueError) as exc:
        _report(RC_ERR_INSTALLED, f"cannot read the agent's metadata: {exc}",
                interactive, err, environ)
        return RC_ERR_INSTALLED
    profile = PROFILES[agent]
    run_fn = load(args.action) if args.action in schema.actions else None
    if run_fn is None:
        _report(RC_ERR_UNIMPLEMENTED, f"action {args.action!r} is not implemented by "
                f"{agent}", interactive, err, environ)
        return RC_ERR_UNIMPLEMENTED
    ctx = Context(env=env, profile=profile, schema=schema,
                  params=build_params(env.params, schema, profile.shutdown_modes), log=log,
                  environ=merged)
    log.debug(f"{args.action}: op timeout {env.meta_timeout_ms} ms, interval "
              f"{env.meta_interval_ms} ms{' (probe)' if env.is_probe else ''}")
    given = env.meta.get("timeout", "").strip()
    if given and not (env.meta_timeout_ms or 0) > 0:
        log.warning(f"OCF_RESKEY_CRM_meta_timeout={given!r} is not a number of milliseconds: "
                    f"using the metadata's {schema.timeout_s(args.action):.0f} s for "
                    f"{args.action}")
    try:
        run_fn(ctx)  # returns on success, raises AgentError for every other end
        rc, reason = RC_SUCCESS, ""
    except AgentError as exc:
        rc, reason = int(exc.rc), exc.reason
    except Exception as exc:  # noqa: BLE001 - an agent must answer, never die with a traceback
        import traceback

        log.debug(traceback.format_exc())
        rc, reason = int(OCFExit.ERR_GENERIC), f"internal error: {type(exc).__name__}: {exc}"
    if rc != RC_SUCCESS and reason:
        (log.info if rc == OCFExit.NOT_RUNNING else log.error)(reason)
    _report(rc, reason, interactive, err, environ)
    return rc


def by_hand_instance(config: str) -> str:
    """The resource instance of a run by hand (no OCF_RESOURCE_INSTANCE): the domain's name in
    the config file, else the file's name; "" without a config."""
    import re

    try:
        with open(config, "rb") as f:
            data = f.read(1 << 16)
    except OSError:
        data = b""
    m = re.search(rb"<domain\b[^>]*>.*?<name>\s*([^<\s][^<]*?)\s*</name>", data, re.S)
    if m:
        return m.group(1).decode("utf-8", "replace")
    return os.path.splitext(os.path.basename(config))[0]


def run(agent: str) -> None:
    """Entry point of the executables in agents/: run the action and exit with its code.

    os._exit skips interpreter finalisation: nothing is left to flush, and a libvirt call
    abandoned in a worker thread (frozen daemon) cannot hold up the exit."""
    try:
        rc = main(sys.argv[1:], os.environ, agent)
    except KeyboardInterrupt:
        rc = 1  # OCF_ERR_GENERIC
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(int(rc))
