"""The docker runtime: each member a container on a private network of its own trial.

Images are built locally from the subject's Compose definition and cached by content
(nothing is ever pulled: an image is looked up, and built if missing). Every container and
network carries the label ``opeval.trial=<trial id>`` and is journaled before it is
created; teardown and ``opeval cleanup`` remove by that label, never by name.

A member's directory is bind-mounted at its own path, so its command line, data and the
agent's view of it are the same as with the local runtime; its program is taken from the
image by name. Crashes are SIGKILLs of the container's process (the engine's restart
policy sees a failure, as ``docker kill`` would not let it), pauses use the cgroup freezer,
and partitions are iptables rules in each member's network namespace, in a chain of the
trial's own.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import yaml

from opeval.errors import EnvironmentProblem, UsageError, yaml_problem
from opeval.runtimes._journal import Journal, mount_tmpfs, sweep_labelled, unmount
from opeval.runtimes._ports import PortLease
from opeval.runtimes._protocol import ContainerDefinition, MemberEvent, MemberSpec, RestartPolicy, supervisor_state

LABEL = "opeval.trial"
#: What opeval reads of a Compose file's ``member`` service (anything else is refused, not ignored).
_SERVICE_KEYS = {"image", "build", "environment", "stop_grace_period"}
#: Private /24 networks are carved from here (one per running trial).
SUBNETS = ipaddress.ip_network("10.213.0.0/16")


def _client() -> Any:
    try:
        import docker
    except ImportError:  # pragma: no cover - a declared dependency
        raise EnvironmentProblem("the docker runtime needs the docker package: pip install docker") from None
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as e:  # noqa: BLE001 - any failure to reach the engine means the same to the user
        raise EnvironmentProblem(f"cannot reach the Docker engine ({type(e).__name__}): start it, or use "
                                 "--runtime local") from None
    return client


def reap_by_label(trial_id: str, client: Any = None) -> list[str]:
    """Remove every container and network labelled with ``trial_id``; say what went.
    EnvironmentProblem if the engine cannot be reached or something labelled remains."""
    own = client is None
    client = client or _client()
    try:
        removed = _remove_labelled(client, trial_id)
        left = labelled_objects(client, trial_id)
    finally:
        if own:
            client.close()
    if left:
        raise EnvironmentProblem(f"could not remove {', '.join(left)} of trial {trial_id[:8]}: run `opeval cleanup` "
                                 "again once the Docker engine answers")
    return removed


def labelled_objects(client: Any, trial_id: str) -> list[str]:
    """Every container, network and volume labelled with ``trial_id``."""
    selector = {"label": f"{LABEL}={trial_id}"}
    return ([f"container {c.name}" for c in client.containers.list(all=True, filters=selector)]
            + [f"network {n.name}" for n in client.networks.list(filters=selector)]
            + [f"volume {v.name}" for v in client.volumes.list(filters=selector)])


def _remove_labelled(client: Any, trial_id: str) -> list[str]:
    removed = []
    selector = {"label": f"{LABEL}={trial_id}"}
    for c in client.containers.list(all=True, filters=selector):
        with contextlib.suppress(Exception):
            c.remove(force=True)
            removed.append(f"container {c.name}")
    for n in client.networks.list(filters=selector):
        with contextlib.suppress(Exception):
            n.remove()
            removed.append(f"network {n.name}")
    for v in client.volumes.list(filters=selector):
        with contextlib.suppress(Exception):
            v.remove(force=True)
            removed.append(f"volume {v.name}")
    return removed


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}


def compose_seconds(value: object) -> float:
    """A Compose duration (``1m30s``, ``500ms``, ``10s``, or a number of seconds) in seconds."""
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise EnvironmentProblem(f"stop_grace_period: {value!r} is not a Compose duration (like 10s or 1m30s)")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def image_tag(definition: ContainerDefinition) -> tuple[str, dict[str, Any]]:
    """The image's tag, by the content of everything its build reads, and the ``member`` service."""
    try:
        compose = yaml.safe_load(definition.compose.read_text())
    except (yaml.YAMLError, RecursionError) as e:
        raise EnvironmentProblem(yaml_problem(definition.compose, e)) from None
    except OSError as e:
        raise EnvironmentProblem(f"{definition.compose}: cannot read the Compose file ({e.strerror})") from None
    try:
        service = compose["services"]["member"]
    except (KeyError, TypeError) as e:
        raise EnvironmentProblem(f"{definition.compose}: not a usable Compose file with a 'member' service ({e})") from None
    if not isinstance(service, dict) or set(service) - _SERVICE_KEYS:
        unknown = sorted(set(service) - _SERVICE_KEYS) if isinstance(service, dict) else ["(not a mapping)"]
        raise EnvironmentProblem(f"{definition.compose}: services.member.{unknown[0]} is not used by opeval "
                                 f"(it reads {', '.join(sorted(_SERVICE_KEYS))})")
    build = service.get("build") or {}
    context = definition.compose.parent / str(build.get("context", "."))
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(context)).encode() + b"\0" + path.read_bytes())
    for name, path in sorted(definition.files.items()):
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return f"{service.get('image', 'opeval/member')}:{digest.hexdigest()[:12]}", service


class DockerRuntime:
    """Runs members as containers. Use as ``async with DockerRuntime(...).session()``."""

    name = "docker"

    def __init__(self, *, trial_id: str, workspace: Path, journal: Journal, restart_policy: RestartPolicy,
                 on_event: Callable[[MemberEvent], Any] = lambda e: None) -> None:
        self.trial_id = trial_id
        self.workspace = workspace
        self.journal = journal
        self.policy = restart_policy
        self.on_event = on_event
        self.ports = PortLease("127.0.0.1")
        self.host = ""  # the network's gateway: where members reach the harness (set by session)
        self.chain = f"OPEVAL-{trial_id[:8]}"
        self._client: Any = None
        self._network: Any = None
        self._subnet: ipaddress.IPv4Network | None = None
        self._addresses: dict[str, str] = {}
        self._image = ""
        self._service: dict[str, Any] = {}
        self._specs: dict[str, MemberSpec] = {}
        self._ids: dict[str, str] = {}
        self._wanted: dict[str, bool] = {}
        self._side: dict[str, int] = {}  # member -> its side of a partition, while one is in place
        self._ours: set[str] = set()  # members whose next start event this runtime reported itself
        self._pids: dict[str, int] = {}  # the last host pid seen for each member
        self._cut = False

    # --- lifecycle -----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[DockerRuntime]:
        """Own the trial's network and containers while the block runs; leaving it removes them."""
        self.journal.set_workspace(self.workspace)
        self.workspace.mkdir(parents=True, exist_ok=True)
        try:
            self._client = await anyio.to_thread.run_sync(_client)
            await anyio.to_thread.run_sync(self._make_network)
            async with anyio.create_task_group() as tg:
                events = self._client.events(decode=True, filters={"label": f"{LABEL}={self.trial_id}",
                                                                   "type": "container"})
                tg.start_soon(self._follow_events, events)
                try:
                    yield self
                finally:
                    events.close()
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._teardown)

    def _teardown(self) -> None:
        left = False
        if self._client is not None:
            try:
                reap_by_label(self.trial_id, self._client)
            except Exception:  # noqa: BLE001 - the journal stays, so `opeval cleanup` finishes the job
                left = True
            finally:
                self._client.close()
        sweep_labelled(self.trial_id)
        self.ports.release()
        for mount in reversed(self.journal.entry.mounts):  # never delete through a mount
            unmount(Path(mount))
        if not left:
            shutil.rmtree(self.workspace, ignore_errors=True)
            self.journal.close()

    def _make_network(self) -> None:
        import docker

        name = f"opeval-{self.trial_id[:12]}"
        self.journal.add_docker("network", name)
        subnets = list(SUBNETS.subnets(new_prefix=24))
        start = int(hashlib.sha256(self.trial_id.encode()).hexdigest()[:8], 16) % len(subnets)
        for subnet in subnets[start:] + subnets[:start]:
            pool = docker.types.IPAMPool(subnet=str(subnet), gateway=str(subnet[1]))
            try:
                self._network = self._client.networks.create(
                    name, driver="bridge", ipam=docker.types.IPAMConfig(pool_configs=[pool]),
                    labels={LABEL: self.trial_id}, check_duplicate=True)
            except docker.errors.APIError as e:
                if "overlap" in str(e).lower():
                    continue  # another trial's network: try the next range
                raise EnvironmentProblem(f"cannot create the trial's Docker network: {e.explanation or e}") from None
            self._subnet, self.host = subnet, str(subnet[1])
            return
        raise EnvironmentProblem(f"no free /24 left in {SUBNETS} for a trial network: run `opeval cleanup`")

    @staticmethod
    def preflight(subject: str, definition: ContainerDefinition | None) -> None:
        """The subject has a container definition and the engine answers."""
        if definition is None:
            raise UsageError(f"subject {subject} has no container definition (its container_definition() is None): "
                             "use --runtime local")
        image_tag(definition)  # the Compose file is usable
        _client().close()  # the engine answers

    def prepare(self, subject: str, definition: ContainerDefinition | None) -> None:
        """Find the subject's image by its content tag, or build it (``FROM scratch``: no pull)."""
        self.preflight(subject, definition)
        assert definition is not None
        tag, self._service = image_tag(definition)
        import docker

        client = self._client
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            build = self._service.get("build") or {}
            with tempfile.TemporaryDirectory(prefix="opeval-image-") as ctx:
                shutil.copytree(definition.compose.parent / str(build.get("context", ".")), ctx, dirs_exist_ok=True)
                for name, path in definition.files.items():
                    shutil.copy2(path, Path(ctx) / name)
                try:
                    client.images.build(path=ctx, dockerfile=str(build.get("dockerfile", "Dockerfile")), tag=tag,
                                        rm=True, pull=False, labels={"opeval.subject": subject})
                except (docker.errors.BuildError, docker.errors.APIError) as e:
                    detail = getattr(e, "msg", None) or getattr(e, "explanation", None) or e
                    raise EnvironmentProblem(f"cannot build the {subject} image {tag}: {detail} (images are built "
                                             "locally; nothing can be pulled)") from None
        self._image = tag

    # --- addresses and resources ------------------------------------------------------------
    def address(self, member: str) -> str:
        """The member's own address on the trial network (fixed for the trial)."""
        if member not in self._addresses:
            assert self._subnet is not None, "address() is for inside session()"
            self._addresses[member] = str(self._subnet[2 + len(self._addresses)])
        return self._addresses[member]

    def allocate_ports(self, count: int) -> list[int]:
        """Ports unique on this machine (each member has its own address, so any would do)."""
        return self.ports.take(count)

    def member_dir(self, name: str) -> Path:
        """The member's directory, bind-mounted into its container at the same path."""
        path = self.workspace / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def mount_capped(self, path: Path, size_bytes: int) -> None:
        """A size-capped tmpfs at ``path`` on the host (journaled), seen by the member through its bind mount."""
        mount_tmpfs(self.journal, path, size_bytes, self.trial_id)

    # --- members -------------------------------------------------------------------------
    def _inspect(self, name: str) -> dict[str, Any]:
        cid = self._ids.get(name)
        if cid is None:
            return {}
        try:
            return self._client.api.inspect_container(cid)["State"]  # type: ignore[no-any-return]
        except Exception:  # noqa: BLE001 - gone is as good as stopped
            return {}

    def _restart_policy(self) -> dict[str, Any]:
        return {"Name": "on-failure"} if self.policy.name == "on-failure" else {"Name": "no"}

    def _create(self, spec: MemberSpec) -> str:
        api = self._client.api
        cname = f"opeval-{self.trial_id[:12]}-{spec.name}"
        self.journal.add_docker("container", cname)
        member_dir = str(self.member_dir(spec.name))
        env = {**{str(k): str(v) for k, v in (self._service.get("environment") or {}).items()},
               **{k: v for k, v in spec.env.items() if k != "PATH"}}
        grace = compose_seconds(self._service.get("stop_grace_period", "5s"))
        host_config = api.create_host_config(binds={member_dir: {"bind": member_dir, "mode": "rw"}},
                                             restart_policy=self._restart_policy())
        networking = api.create_networking_config({self._network.name: api.create_endpoint_config(
            ipv4_address=self.address(spec.name))})
        program = os.path.basename(spec.argv[0])
        created = api.create_container(
            self._image, command=[program, *spec.argv[1:]], name=cname, hostname=spec.name,
            labels={LABEL: self.trial_id, "opeval.member": spec.name}, environment=env, working_dir=spec.cwd,
            host_config=host_config, networking_config=networking, stop_timeout=max(1, round(grace)))
        return str(created["Id"])

    async def start_member(self, spec: MemberSpec, *, reason: str = "initial") -> int:
        """Create (first time) and start the member's container; return its host pid."""
        if not self._image:
            raise UsageError("the docker runtime was not prepared: prepare() before starting members")
        self._specs[spec.name] = spec
        self._wanted[spec.name] = True
        if self.is_running(spec.name):
            return self.pid(spec.name) or 0
        if spec.name not in self._ids:
            self._ids[spec.name] = await anyio.to_thread.run_sync(self._create, spec)
        elif self._inspect(spec.name).get("Restarting"):  # in the engine's back-off: take over, start it now
            await anyio.to_thread.run_sync(lambda: self._client.api.stop(self._ids[spec.name], timeout=1))
        self._ours.add(spec.name)  # the engine's start event for this start is ours, reported here
        since = time.time()
        try:
            await anyio.to_thread.run_sync(self._client.api.start, self._ids[spec.name])
        except BaseException:
            self._ours.discard(spec.name)
            raise
        if self._cut:
            await anyio.to_thread.run_sync(self._apply_cut, spec.name)
        self._copy_log(spec.name, since)
        pid = self._pids[spec.name] = self.pid(spec.name) or 0
        self.on_event(MemberEvent(member=spec.name, kind="started", pid=pid, restarts=self.restarts(spec.name),
                                  reason=reason))
        return pid

    async def stop_member(self, name: str, timeout_s: float = 5.0) -> None:
        """Stop on purpose (SIGTERM, then SIGKILL): the engine does not restart it."""
        self._member(name)
        self._wanted[name] = False
        with contextlib.suppress(Exception):
            await anyio.to_thread.run_sync(lambda: self._client.api.stop(self._ids[name], timeout=int(timeout_s)))

    def signal_member(self, name: str, sig: int) -> int:
        """SIGSTOP/SIGCONT freeze and thaw the container's cgroup; any other signal goes to its
        process on the host, so the engine sees a crash and applies its restart policy. (The
        process is its namespace's PID 1: a signal it installs no handler for, other than
        SIGKILL, is ignored, as inside any container.)"""
        self._member(name)
        pid = self.pid(name)
        if pid is None:
            raise UsageError(f"{name} is not running")
        if sig == signal.SIGSTOP:
            self._client.api.pause(self._ids[name])
        elif sig == signal.SIGCONT:
            self._client.api.unpause(self._ids[name])
        else:
            os.kill(pid, sig)
        return pid

    def _member(self, name: str) -> MemberSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UsageError(f"no member {name!r}") from None

    @staticmethod
    def _alive(st: dict[str, Any]) -> bool:
        # The engine says Running (and Restarting) while a crashed container waits out its
        # restart back-off; its process is gone then (Pid 0).
        return bool(st.get("Running")) and not st.get("Restarting") and bool(st.get("Pid"))

    def is_running(self, name: str) -> bool:
        """Is the container's process alive (paused counts: it lives, frozen)?"""
        return self._alive(self._inspect(name))

    def is_paused(self, name: str) -> bool:
        """Is its cgroup frozen?"""
        return bool(self._inspect(name).get("Paused"))

    def pid(self, name: str) -> int | None:
        """The container's main process, as the host sees it."""
        st = self._inspect(name)
        return int(st["Pid"]) if self._alive(st) else None

    def last_exit(self, name: str) -> int | None:
        """Its last exit: negative for a signal (the engine reports 128 + signal)."""
        st = self._inspect(name)
        if not st or self._alive(st) or not st.get("FinishedAt", "").startswith(("1", "2")):
            return None
        code = int(st.get("ExitCode", 0))
        return -(code - 128) if code > 128 else code

    def state(self, name: str) -> str:
        """What ``nodectl status`` shows."""
        self._member(name)
        st = self._inspect(name)
        return supervisor_state(running=self._alive(st), paused=bool(st.get("Paused")),
                                wanted=self._wanted.get(name, True), last_exit=self.last_exit(name))

    def members(self) -> list[str]:
        """Every member, in start order."""
        return list(self._specs)

    def spec(self, name: str) -> MemberSpec:
        """How the member is run."""
        return self._member(name)

    def restarts(self, name: str) -> int:
        """Restarts by the engine's restart policy."""
        cid = self._ids.get(name)
        if cid is None:
            return 0
        with contextlib.suppress(Exception):
            return int(self._client.api.inspect_container(cid).get("RestartCount", 0))
        return 0

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The end of the container's output."""
        self._member(name)
        try:
            out = self._client.api.logs(self._ids[name], tail=max(1, lines), stdout=True, stderr=True)
        except Exception as e:  # noqa: BLE001
            return f"(cannot read the log: {e})"
        return str(out.decode(errors="replace")).rstrip("\n")

    def _copy_log(self, name: str, since: float) -> None:
        """Append the container's output to the member's log file while this run of it lasts,
        so the log on disk says what ``nodectl logs`` says (as with the local runtime)."""
        cid, path = self._ids[name], Path(self._specs[name].log_path)

        def copy() -> None:
            with contextlib.suppress(Exception), open(path, "ab") as f:  # noqa: PTH123
                for chunk in self._client.api.logs(cid, stream=True, follow=True, since=int(since)):
                    f.write(chunk)
                    f.flush()

        threading.Thread(target=copy, name=f"opeval-log-{name}", daemon=True).start()

    # --- the engine's events -------------------------------------------------------------------
    async def _follow_events(self, events: Iterator[dict[str, Any]]) -> None:
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](256)

        def pump() -> None:
            with contextlib.suppress(Exception):  # the stream ends when the session closes it
                for ev in events:
                    anyio.from_thread.run_sync(send.send_nowait, ev)

        async with send, receive, anyio.create_task_group() as tg:
            tg.start_soon(lambda: anyio.to_thread.run_sync(pump, abandon_on_cancel=True))
            async for ev in receive:
                self._emit(ev)

    def _emit(self, ev: dict[str, Any]) -> None:
        attrs = ev.get("Actor", {}).get("Attributes", {})
        name = attrs.get("opeval.member")
        if name is None or ev.get("status") not in ("start", "die"):
            return
        if ev["status"] == "start":
            if name in self._ours:
                self._ours.discard(name)
                return
            self._copy_log(name, float(ev.get("timeNano", time.time_ns())) / 1e9 - 0.5)
            if self._cut:  # a restarted container has a new namespace: the partition follows it
                threading.Thread(target=self._reapply_cut, args=(name,), daemon=True).start()
            restarts = self.restarts(name)
            reason = f"restart {restarts} by the engine ({self.policy.name})"
            self._pids[name] = self.pid(name) or 0
            self.on_event(MemberEvent(member=name, kind="started", pid=self._pids[name], restarts=restarts,
                                      reason=reason))
        else:
            code = int(attrs.get("exitCode", 0))
            sig = code - 128 if code > 128 else None
            self.on_event(MemberEvent(member=name, kind="exited", pid=self._pids.get(name, 0),
                                      exit_code=None if sig else code,
                                      signal=sig))

    # --- network faults --------------------------------------------------------------------------
    def _iptables(self, member: str, *args: str, check: bool = True) -> None:
        pid = self.pid(member)
        if pid is None:
            return
        r = subprocess.run(["nsenter", "-t", str(pid), "-n", "iptables", "-w", *args], capture_output=True,
                           text=True, check=False)
        if check and r.returncode != 0:
            raise EnvironmentProblem(f"iptables in {member}'s network namespace failed: {r.stderr.strip()}")

    def cut(self, groups: list[set[str]]) -> None:
        """Drop every packet between members of different groups, in each member's own namespace
        (and again in a member's new namespace whenever it restarts, until :meth:`heal`)."""
        self._side = {m: i for i, g in enumerate(groups) for m in g}
        self._cut = True
        for member in self._side:
            self._apply_cut(member)

    def _reapply_cut(self, member: str) -> None:
        with contextlib.suppress(Exception):  # it may have died again meanwhile: its next start re-applies
            self._apply_cut(member)

    def _apply_cut(self, member: str) -> None:
        if member not in self._side:
            return
        self._iptables(member, "-N", self.chain, check=False)
        self._iptables(member, "-F", self.chain)
        for hook in ("INPUT", "OUTPUT"):
            self._iptables(member, "-D", hook, "-j", self.chain, check=False)
            self._iptables(member, "-I", hook, "1", "-j", self.chain)
        for other, j in self._side.items():
            if j != self._side[member]:
                ip = self.address(other)
                self._iptables(member, "-A", self.chain, "-s", ip, "-j", "DROP")
                self._iptables(member, "-A", self.chain, "-d", ip, "-j", "DROP")

    def heal(self) -> bool:
        """Remove the trial's chain from every member (idempotent); True if links were cut."""
        if not self._cut:
            return False
        for member in self._specs:
            for hook in ("INPUT", "OUTPUT"):
                self._iptables(member, "-D", hook, "-j", self.chain, check=False)
            self._iptables(member, "-F", self.chain, check=False)
            self._iptables(member, "-X", self.chain, check=False)
        self._cut = False
        self._side = {}
        return True

    def chains(self) -> dict[str, bool]:
        """Whether each running member's namespace holds the trial's chain (for checks)."""
        found = {}
        for member in self._specs:
            pid = self.pid(member)
            if pid is not None:
                r = subprocess.run(["nsenter", "-t", str(pid), "-n", "iptables", "-w", "-S"], capture_output=True,
                                   text=True, check=False)
                found[member] = self.chain in r.stdout
        return found
