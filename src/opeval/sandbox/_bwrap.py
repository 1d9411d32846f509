"""The sandbox policy and its embedded mechanism, bubblewrap.

Each agent command runs as::

    nsenter --net=<trial's agent network> -- bwrap <policy> -- prlimit <limits> --
        setpriv --reuid nobody ... -- bash -c COMMAND

bubblewrap builds the command's world from a declarative list in one exec: a new PID,
mount, IPC and UTS namespace; system directories read-only; the operator's home (a
size-capped filesystem of the trial), a private capped ``/tmp``, the operator tools and
each member's directory; nothing else (not the store, the read models, the harness's
workspace or journal, other trials, the user's home, the Docker socket). Its PID 1 ends
with the command and takes every process of the namespace with it, and it dies with its
parent, so nothing the agent starts outlives its command or the harness. ``setpriv``
then drops to an unprivileged user with no capabilities and no way to gain any.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from opeval.errors import EnvironmentProblem, UsageError
from opeval.events import SandboxInfo
from opeval.sandbox._network import OperatorNetwork

#: How the agent's commands can be run: isolated (the default) or, only when asked, not.
MECHANISMS = ("bubblewrap", "none")
#: The unprivileged user the agent runs as (``nobody``).
OPERATOR_UID = OPERATOR_GID = 65534
#: Where things are inside the sandbox (documented in the README).
HOME = "/home/operator"
TOOLS = "/opt/operator/bin"
NODECTL_SOCKET = "/run/opeval/nodectl.sock"
MEMBERS = "/members"
_SYSTEM = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


@dataclass(frozen=True)
class Limits:
    """What one command may use; the operator's home is capped per trial."""

    processes: int = 256  # RLIMIT_NPROC of the unprivileged user: no fork bomb takes the machine
    open_files: int = 256  # per process: a flood of connections cannot exhaust the harness's descriptors
    address_space: int = 4 << 30  # per process
    file_size: int = 1 << 30  # per file, also in the members' directories
    tmp_bytes: int = 64 << 20  # the command's private /tmp
    home_bytes: int = 256 << 20  # the operator's home, shared by the trial's commands

    def as_dict(self) -> dict[str, int]:
        """For the record."""
        return {"processes": self.processes, "open_files": self.open_files, "address_space_bytes": self.address_space,
                "file_size_bytes": self.file_size, "tmp_bytes": self.tmp_bytes, "home_bytes": self.home_bytes}


@functools.cache
def bwrap_version() -> str:
    """``bubblewrap 0.8.0``, or empty when bwrap is not installed."""
    exe = shutil.which("bwrap")
    if exe is None:
        return ""
    r = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return r.stdout.strip()


def check_mechanism(mechanism: str) -> None:
    """Refuse (before anything starts) a mechanism this machine cannot provide."""
    if mechanism not in MECHANISMS:
        raise UsageError(f"unknown sandbox {mechanism!r} (choose {' or '.join(MECHANISMS)})")
    if mechanism == "none":
        return
    missing = [tool for tool in ("bwrap", "nsenter", "prlimit", "setpriv") if shutil.which(tool) is None]
    if "bwrap" in missing:
        raise EnvironmentProblem("the agent sandbox needs bubblewrap: install it (apt-get install bubblewrap), "
                                 "or pass --sandbox none to run the agent unisolated")
    if missing:
        raise EnvironmentProblem(f"the agent sandbox needs util-linux's {', '.join(missing)}: install util-linux")
    if os.geteuid() != 0:
        raise EnvironmentProblem("the agent sandbox needs root (it makes a network namespace and drops the agent "
                                 "to an unprivileged user): run as root, or pass --sandbox none")


def describe(mechanism: str, limits: Limits = Limits()) -> SandboxInfo:  # noqa: B008 - frozen
    """The policy as recorded in TrialStarted."""
    if mechanism == "none":
        return SandboxInfo(mechanism="none", user=f"uid {os.geteuid()} (the harness's own)",
                           network="the host's", mounts=["the host's filesystem"])
    return SandboxInfo(
        mechanism="bubblewrap", version=bwrap_version(), user=f"uid {OPERATOR_UID}, no capabilities, no_new_privs",
        namespaces=["pid", "mount", "ipc", "uts", "net"],
        network="loopback only; each member's client URL forwarded at the address the cluster advertises",
        mounts=["ro system dirs (/usr /etc /bin /lib...)", f"rw {HOME} (capped per trial)", "rw /tmp (capped per command)",
                f"ro {TOOLS}", f"rw {NODECTL_SOCKET}", f"rw {MEMBERS}/<member> (each member's directory)"],
        limits=limits.as_dict(),
    )


def interpreter() -> tuple[str, str | None]:
    """A Python for ``nodectl`` inside the sandbox, and the directory to bind for it (None:
    it is in the system directories already)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate, None
    exe = os.path.realpath(sys.executable)
    return exe, os.path.realpath(sys.base_prefix)


@dataclass(frozen=True)
class Bubblewrap:
    """The command line that runs one agent command under the policy."""

    network: OperatorNetwork
    control_socket: Path
    members: dict[str, Path]  # member -> its directory on the host
    home: Path = Path("/nonexistent")  # set by the Sandbox
    tools: dict[str, Path] = field(default_factory=dict)  # name in TOOLS -> file on the host
    extra_ro: tuple[str, ...] = ()
    hidden: tuple[Path, ...] = ()  # harness paths that lie under a bound tree: masked
    limits: Limits = Limits()  # noqa: RUF009 - frozen

    @property
    def network_fd(self) -> int:
        """The descriptor of the agent's network, inherited by each command."""
        assert self.network.fd is not None, "the agent's network is not serving"
        return self.network.fd

    def argv(self, command: str) -> list[str]:
        """``nsenter ... bwrap ... -- bash -c command``."""
        a = ["nsenter", f"--net={self.network.path}", "--", "bwrap",
             "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "operator",
             "--die-with-parent", "--new-session"]
        for path in _SYSTEM:
            if os.path.islink(path):
                a += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                a += ["--ro-bind", path, path]
        for path in self.extra_ro:
            a += ["--ro-bind", path, path]
        a += ["--proc", "/proc", "--dev", "/dev",
              "--perms", "1777", "--size", str(self.limits.tmp_bytes), "--tmpfs", "/tmp"]
        # Members at the documented path, and at their own: what a member's log and flags say is true.
        binds = [(str(self.home), HOME), (str(self.control_socket), NODECTL_SOCKET)]
        binds += [(str(src), f"{MEMBERS}/{name}") for name, src in self.members.items()]
        binds += [(str(src), str(src)) for src in self.members.values()]
        made: set[str] = set()
        for dest in [d for _, d in binds] + [f"{TOOLS}/{name}" for name in self.tools]:
            for parent in reversed(Path(dest).parents[:-1]):  # bwrap would make them 0700
                if str(parent) not in made and str(parent) not in ("/tmp", "/run"):
                    made.add(str(parent))
                    a += ["--perms", "0755", "--dir", str(parent)]
        for src, dest in binds:
            a += ["--bind", src, dest]
        for name, src in self.tools.items():
            a += ["--ro-bind", str(src), f"{TOOLS}/{name}"]
        for path in self.hidden:
            a += ["--tmpfs", str(path)] if path.is_dir() else ["--ro-bind", "/dev/null", str(path)]
        a += ["--chdir", HOME, "--cap-drop", "ALL",
              "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP",
              "--cap-add", "CAP_DAC_OVERRIDE", "--",  # to enter the home; setpriv drops all of them
              "prlimit", f"--nproc={self.limits.processes}", f"--nofile={self.limits.open_files}", f"--as={self.limits.address_space}",
              f"--fsize={self.limits.file_size}", "--core=0", "--",
              "setpriv", f"--reuid={OPERATOR_UID}", f"--regid={OPERATOR_GID}", "--clear-groups",
              "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
              "bash", "-c", command]
        return a
