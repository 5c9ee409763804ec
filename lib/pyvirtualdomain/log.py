"""Logging for an OCF agent: stderr (captured by Pacemaker's executor) and, as
resource-agents' ha_log does, syslog when HA_LOGFACILITY is set (not "none"), HA_LOGFILE when
set, and HA_DEBUGLOG (every line, debug ones included when debugging). Every line names the
agent and resource instance.

With trace_ra (crmsh's crm resource trace, pcs ... trace_ra=1; crm_resource --force-check
sets OCF_TRACE_RA) every line of the action, debug
included, also goes to a trace file where resource-agents puts its agents' traces."""

from __future__ import annotations

import os
import time
from typing import Mapping, TextIO

from .ocf import OCF_TRUE_WORDS

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
SYSLOG_FACILITIES = ("daemon", "user", "local0", "local1", "local2", "local3", "local4",
                     "local5", "local6", "local7", "syslog")
DEFAULT_HA_VARLIB = "/var/lib/heartbeat"


DEFAULT_DATEFMT = "%b %d %T "


class Log:
    def __init__(self, agent: str, instance: str, stream: TextIO | None, debug: bool = False,
                 facility: str | None = None, trace: TextIO | None = None,
                 logfile: str | None = None, debuglog: str | None = None,
                 datefmt: str = DEFAULT_DATEFMT) -> None:
        self.tag = f"{agent}({instance})"
        self.stream = stream
        self.threshold = LEVELS["debug"] if debug else LEVELS["info"]
        self.trace = trace
        self.logfile = logfile or None
        self.debuglog = debuglog if debuglog and debuglog != logfile else None
        self.datefmt = datefmt
        self.lines: list[str] = []
        self._syslog = None
        if facility and facility.lower() in SYSLOG_FACILITIES:  # not "none"
            import syslog

            syslog.openlog(self.tag, syslog.LOG_PID,
                           getattr(syslog, f"LOG_{facility.upper()}", syslog.LOG_DAEMON))
            self._syslog = syslog

    def _emit(self, level: str, message: str) -> None:
        if self.trace is None and LEVELS[level] < self.threshold:
            return
        line = f"{self.tag}[{os.getpid()}]: {level.upper()}: {message}"
        if self.trace is not None:
            try:
                self.trace.write(f"{time.strftime('%T')} {line}\n")
                self.trace.flush()
            except OSError:
                # A trace that cannot be written (its file system full) must not fail the
                # action: the rest of the action goes untraced.
                self.trace = None
        if LEVELS[level] < self.threshold:
            return
        self.lines.append(line)
        if self.stream is not None:
            self.stream.write(line + "\n")
            self.stream.flush()
        if self._syslog is not None:
            prio = {"debug": self._syslog.LOG_DEBUG, "info": self._syslog.LOG_INFO,
                    "warning": self._syslog.LOG_WARNING, "error": self._syslog.LOG_ERR}[level]
            self._syslog.syslog(prio, f"{level.upper()}: {message}")
        for path in (self.logfile, self.debuglog):
            if path is None or (path is self.logfile and level == "debug"):
                continue
            try:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(f"{time.strftime(self.datefmt)}{line}\n")
            except OSError:
                pass  # a log file that cannot be written must not fail the action

    def debug(self, message: str) -> None:
        self._emit("debug", message)

    def info(self, message: str) -> None:
        self._emit("info", message)

    def warning(self, message: str) -> None:
        self._emit("warning", message)

    def error(self, message: str) -> None:
        self._emit("error", message)


def trace_destination(framework: Mapping[str, str], environ: Mapping[str, str], agent: str,
                      instance: str, action: str, interactive: bool) -> str | int | None:
    """Where resource-agents would put this action's trace: a descriptor 3-9 or an absolute
    path in trace_file (or OCF_TRACE_FILE), else
    ``<trace_dir or $HA_VARLIB/trace_ra>/<type>/<instance>.<action>.<YYYY-MM-DD.HH:MM:SS>``
    (not on a terminal). None when tracing is off."""
    if (environ.get("OCF_TRACE_RA") or framework.get("trace_ra") or "").strip() \
            not in OCF_TRUE_WORDS:
        return None
    file = (environ.get("OCF_TRACE_FILE") or framework.get("trace_file") or "").strip()
    if file.isdigit() and 3 <= int(file) <= 9:
        return int(file)
    if file.startswith("/") and file.count("/") >= 2:
        return file
    if interactive:
        return None
    directory = framework.get("trace_dir", "").strip() or os.path.join(
        environ.get("HA_VARLIB") or DEFAULT_HA_VARLIB, "trace_ra")
    kind = environ.get("OCF_RESOURCE_TYPE") or agent
    return os.path.join(directory, kind, f"{instance}.{action}.{time.strftime('%F.%T')}")


def open_trace(destination: str | int, environ: Mapping[str, str]) -> TextIO | None:
    """The trace stream, headed by the action's environment as resource-agents' traces are;
    None (and a note on stderr by the caller) when it cannot be opened."""
    try:
        if isinstance(destination, int):
            stream = os.fdopen(destination, "w", closefd=False)
        else:
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            stream = open(destination, "a", encoding="utf-8")  # kept open for the action
        stream.write("".join(f"{k}={v}\n" for k, v in sorted(environ.items())))
        stream.flush()
    except OSError:
        return None
    return stream
