"""Logging for an OCF agent: stderr (captured by Pacemaker's executor) and, when
HA_LOGFACILITY is set, syslog. Every line names the agent and resource instance."""

from __future__ import annotations

import os
from typing import TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
SYSLOG_FACILITIES = ("daemon", "user", "local0", "local1", "local2", "local3", "local4",
                     "local5", "local6", "local7", "syslog")


class Log:
    def __init__(self, agent: str, instance: str, stream: TextIO | None, debug: bool = False,
                 facility: str | None = None) -> None:
        self.tag = f"{agent}({instance})"
        self.stream = stream
        self.threshold = LEVELS["debug"] if debug else LEVELS["info"]
        self.lines: list[str] = []
        self._syslog = None
        if facility and facility.lower() in SYSLOG_FACILITIES:
            import syslog

            syslog.openlog(self.tag, syslog.LOG_PID,
                           getattr(syslog, f"LOG_{facility.upper()}", syslog.LOG_DAEMON))
            self._syslog = syslog

    def _emit(self, level: str, message: str) -> None:
        if LEVELS[level] < self.threshold:
            return
        line = f"{self.tag}[{os.getpid()}]: {level.upper()}: {message}"
        self.lines.append(line)
        if self.stream is not None:
            self.stream.write(line + "\n")
            self.stream.flush()
        if self._syslog is not None:
            prio = {"debug": self._syslog.LOG_DEBUG, "info": self._syslog.LOG_INFO,
                    "warning": self._syslog.LOG_WARNING, "error": self._syslog.LOG_ERR}[level]
            self._syslog.syslog(prio, f"{level.upper()}: {message}")

    def debug(self, message: str) -> None:
        self._emit("debug", message)

    def info(self, message: str) -> None:
        self._emit("info", message)

    def warning(self, message: str) -> None:
        self._emit("warning", message)

    def error(self, message: str) -> None:
        self._emit("error", message)
