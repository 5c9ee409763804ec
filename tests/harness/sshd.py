"""An sshd inside each of the two libvirt hosts (twohosts.py), so that the agent can reach the
other host's libvirtd over libvirt's ssh transport (qemu+ssh://hostB:2222/system?keyfile=...)
as it does on clusters that allow nothing else.

Everything lives in a directory of the caller's: the client key, the hosts' key, the
authorized_keys. Each host gets a private /root/.ssh (a bind mount in its own mount namespace,
where the agent runs), so ssh's known_hosts never lands in the machine's /root. sshd is started
inside the host's namespaces and stopped by pid; /run/sshd (sshd's privilege separation
directory) is made if missing and removed again."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from .common import HarnessError, pid_alive, wait_until
from .twohosts import HOSTS, TwoHosts

SSH_PORT = 2222
PRIVSEP_DIR = Path("/run/sshd")


class HostSshd:
    def __init__(self, hosts: TwoHosts, workdir: Path) -> None:
        self.hosts = hosts
        self.dir = workdir
        self.key = workdir / "id_ha"
        self.pids: dict[str, int] = {}
        self.made_privsep = False

    def _keygen(self, path: Path) -> None:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                       check=True, capture_output=True, timeout=30)

    def _config(self, host: str) -> Path:
        cfg = self.dir / f"sshd_config-{host}"
        cfg.write_text(f"Port {SSH_PORT}\nListenAddress 0.0.0.0\n"
                       f"HostKey {self.dir / 'host_key'}\n"
                       f"PidFile {self.dir / f'sshd-{host}.pid'}\n"
                       f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\n"
                       "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                       "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                       "LogLevel ERROR\n")
        return cfg

    def start(self) -> HostSshd:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._keygen(self.key)
        self._keygen(self.dir / "host_key")
        (self.dir / "authorized_keys").write_text((self.dir / "id_ha.pub").read_text())
        if not PRIVSEP_DIR.exists():
            PRIVSEP_DIR.mkdir(mode=0o755)
            self.made_privsep = True
        for spec in HOSTS:
            dot_ssh = self.dir / f"dot-ssh-{spec.key}"
            dot_ssh.mkdir(mode=0o700, exist_ok=True)
            done = self.hosts.exec(spec.key, ["sh", "-c", f"mkdir -p /root/.ssh && mount --bind "
                                              f"{dot_ssh} /root/.ssh"])
            if done.returncode != 0:
                raise HarnessError(f"host{spec.key}: cannot give it a private /root/.ssh: "
                                   f"{done.stderr}")
            node = self.hosts.node(spec.key)
            node.pidfiles = {**node.pidfiles, "sshd": f"sshd-{spec.key}.spawned"}
            self.pids[spec.key] = node.spawn("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f",
                                                      str(self._config(spec.key))], {})
        for spec in HOSTS:
            if not wait_until(lambda s=spec: self._listening(s.key), 10.0, 0.2):
                raise HarnessError(f"host{spec.key}: sshd does not listen on {SSH_PORT}")
        return self

    def _listening(self, host: str) -> bool:
        out = self.hosts.exec(host, ["ss", "-ltnH", f"sport = :{SSH_PORT}"]).stdout
        return bool(out.strip())

    def uri(self, host_part: str = "localhost") -> str:
        """A hypervisor URI through this sshd (no_verify: the test's host key is new)."""
        return (f"qemu+ssh://root@{host_part}:{SSH_PORT}/system?keyfile={self.key}"
                "&no_verify=1")

    def stop(self) -> None:
        for pid in self.pids.values():
            if pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
        for pid in self.pids.values():
            if not wait_until(lambda p=pid: not pid_alive(p), 10.0, 0.1):
                os.kill(pid, signal.SIGKILL)
        for spec in HOSTS:
            self.hosts.exec(spec.key, ["umount", "/root/.ssh"])
        if self.made_privsep:
            try:
                PRIVSEP_DIR.rmdir()
            except OSError:
                pass

    def __enter__(self) -> HostSshd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
