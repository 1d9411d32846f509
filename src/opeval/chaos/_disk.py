"""``disk_pressure``: a member runs out of space.

Two modes (``params.mode``):

- ``nospace`` (default): every member starts with a small storage quota (``quota_mb``,
  default 8), and the fault writes until the subject raises its quota alarm and refuses
  writes cluster-wide (etcd: NOSPACE; an operator repairs it with compaction, defrag and
  alarm disarm). Needs a subject with the :class:`~opeval.subjects.SpaceQuota` capability.
- ``fill``: every member's data directory is a size-capped tmpfs (``size_mb``, default
  192; root only), and the fault fills the victim's with one preallocated file, leaving
  ``free_kb`` (default 0). Reverted by deleting the file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio

from opeval.chaos._protocol import (
    ChaosContext,
    ChaosVerificationError,
    FaultBase,
    Injection,
    Verification,
)
from opeval.chaos._targets import choose_member, validate_target
from opeval.errors import EnvironmentProblem, UsageError
from opeval.events import ChaosSpec
from opeval.params import DURATION, Param
from opeval.runtimes import MemberSpec, Runtime
from opeval.subjects import SpaceQuota, Subject

BALLAST_FILE = "ballast.opeval"
MODES = ("nospace", "fill")


MODE = Param("mode", str, "nospace: the subject's storage quota alarm; fill: a full disk (root)", "nospace",
             choices=MODES)
QUOTA = Param("quota_mb", int, "mode nospace: each member's storage quota, MiB", 8, low=2, high=1024)
# etcd preallocates 64 MiB WAL segments: a smaller disk does not start.
SIZE = Param("size_mb", int, "mode fill: each member's data filesystem, MiB", 192, low=130, high=4096)
FREE = Param("free_kb", int, "mode fill: KiB left free on the victim's filesystem", 0, low=0, high=1 << 20)
#: The parameters only one mode uses.
_MODE_ONLY = {"quota_mb": "nospace", "size_mb": "fill", "free_kb": "fill"}


def _param(spec: ChaosSpec, p: Param) -> int:
    return int(spec.params.get(p.name, p.default))  # type: ignore[arg-type]  # checked by its declaration


class DiskPressure(FaultBase):
    """Run a member out of space (``nospace``: etcd's quota alarm; ``fill``: a full disk)."""

    kind = "disk_pressure"
    params = (MODE, QUOTA, SIZE, FREE, DURATION)

    def validate(self, spec: ChaosSpec, member_names: list[str]) -> None:
        """Target and the parameters of the mode; ``fill`` needs root (it mounts a tmpfs)."""
        mode = spec.params.get("mode", MODE.default)
        for name, only in _MODE_ONLY.items():
            if name in spec.params and mode != only:
                raise UsageError(f"disk_pressure: {name} is for mode {only}, not {mode}")
        if mode == "nospace":
            if spec.target not in ("cluster", "random"):
                raise UsageError("disk_pressure mode nospace hits the whole cluster: target cluster")
        else:
            validate_target(self.kind, spec, member_names)
            if os.geteuid() != 0:
                raise EnvironmentProblem("disk_pressure mode fill mounts a size-capped tmpfs: run as root, "
                                         "or use mode nospace")

    def prepare_members(self, spec: ChaosSpec, specs: list[MemberSpec], runtime: Runtime,
                        subject: Subject) -> list[MemberSpec]:
        """Before the cluster starts: the small quota, or a capped filesystem per member."""
        if spec.params.get("mode", MODE.default) == "nospace":
            return _quota_subject(subject).with_quota(specs, _param(spec, QUOTA) << 20)
        size = _param(spec, SIZE) << 20
        for s in specs:
            runtime.mount_capped(self._data_dir(s), size)
        return specs

    @staticmethod
    def _data_dir(s: MemberSpec) -> Path:
        if not s.data_dir:
            raise UsageError(f"disk_pressure mode fill: the subject names no data directory for {s.name}")
        return Path(s.data_dir)

    async def inject(self, spec: ChaosSpec, ctx: ChaosContext) -> Injection:
        """Write ballast until the quota trips, or fill the victim's filesystem."""
        if spec.params.get("mode", "nospace") == "nospace":
            return await self._exhaust_quota(ctx)
        names = sorted(m.name for m in ctx.before.members)
        victim = choose_member(spec.target, ctx.before.leader, names, ctx.rng)
        data = self._data_dir(ctx.runtime.spec(victim))
        st = os.statvfs(data)
        fill = max(0, st.f_bavail * st.f_frsize - _param(spec, FREE) * 1024)
        fd = os.open(data / BALLAST_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, fill)
        finally:
            os.close(fd)
        return Injection(target=victim, detail={"mode": "fill", "file": str(data / BALLAST_FILE), "bytes": fill})

    async def _exhaust_quota(self, ctx: ChaosContext) -> Injection:
        written = await _quota_subject(ctx.subject).fill_quota(ctx.http)
        return Injection(target="cluster", detail={"mode": "nospace", **written})

    async def verify(self, injection: Injection, ctx: ChaosContext, timeout_s: float) -> Verification:
        """nospace: every member reports the NOSPACE alarm. fill: the victim's filesystem has
        no room left and the member fails or refuses to write."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if injection.detail["mode"] == "nospace":
                state = await ctx.subject.observe(ctx.http, ctx.running())
                alarm = _quota_subject(ctx.subject).quota_alarm
                alarmed = [m.name for m in state.members if any(a.startswith(alarm) for a in m.alarms)]
                if alarmed and len(alarmed) == len(state.members):
                    sizes = [m.detail.get("db_size") for m in state.members]
                    return Verification(
                        effect=f"{alarm} alarm raised on every member after {injection.detail['ballast_puts']} large "
                               "writes: the cluster refuses writes",
                        observations={"alarmed": ",".join(alarmed),
                                      "db_size": max((v for v in sizes if isinstance(v, int)), default=0)})
            else:
                data = Path(str(injection.detail["file"])).parent
                st = os.statvfs(data)
                free = st.f_bavail * st.f_frsize
                victim = injection.target
                if free < 64 * 1024:  # full; now the member must feel it: crash, or fail its health check
                    running = ctx.runtime.is_running(victim)
                    healthy = False
                    if running:
                        state = await ctx.subject.observe(ctx.http, ctx.running())
                        healthy = next(m.healthy for m in state.members if m.name == victim)
                    if not running or not healthy:
                        how = (f"it exited ({ctx.runtime.state(victim)})" if not running else "it fails its health check")
                        return Verification(
                            effect=f"{victim}'s data directory is full ({free} bytes free) and {how}",
                            observations={"member": victim, "free_bytes": free, "filled_bytes": injection.detail["bytes"],
                                          "process_running": running, "healthy": healthy})
            await anyio.sleep(0.1)
        raise ChaosVerificationError("the disk pressure was never observed")

    async def revert(self, injection: Injection, ctx: ChaosContext) -> str | None:
        """Free the space (idempotent): compaction, defrag and disarm; or delete the file."""
        if injection.detail["mode"] == "fill":
            path = Path(str(injection.detail["file"]))
            if not path.exists():
                return None
            path.unlink()
            return f"removed {path.name} ({int(injection.detail['bytes']) >> 20} MiB)"  # type: ignore[arg-type]
        running = [n for n in ctx.runtime.members() if ctx.runtime.is_running(n)]
        return await _quota_subject(ctx.subject).clear_quota(ctx.http, running)


def _quota_subject(subject: Subject) -> SpaceQuota:
    if not isinstance(subject, SpaceQuota):
        raise UsageError(f"disk_pressure mode nospace: subject {subject.name} has no storage quota; use mode fill")
    return subject
