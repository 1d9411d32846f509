"""``disk_pressure``: a member runs out of space.

Two modes (``params.mode``):

- ``nospace`` (default): every member starts with a small backend quota
  (``quota_mb``, default 8), and the fault overwrites one key with large values until
  etcd raises its NOSPACE alarm and refuses writes cluster-wide. An operator repairs it
  with etcdctl: compaction, defrag, alarm disarm.
- ``fill``: every member's data directory is a size-capped tmpfs (``size_mb``, default
  192; root only), and the fault fills the victim's with one preallocated file, leaving
  ``free_kb`` (default 0). Reverted by deleting the file.
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
from pathlib import Path

import anyio
import httpx

from opeval.chaos._protocol import (
    ChaosContext,
    ChaosVerificationError,
    Injection,
    Verification,
)
from opeval.chaos._targets import choose_member, validate_duration, validate_target
from opeval.errors import EnvironmentProblem, UsageError
from opeval.events import ChaosSpec
from opeval.runtimes import MemberSpec, Runtime

BALLAST_KEY = base64.b64encode(b"opeval/chaos/ballast").decode()
BALLAST_FILE = "ballast.opeval"
MODES = ("nospace", "fill")


def _int_param(spec: ChaosSpec, key: str, default: int, low: int, high: int) -> int:
    v = spec.params.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise UsageError(f"disk_pressure: {key} must be a whole number from {low} to {high}, not {v!r}")
    return v


class DiskPressure:
    """Run a member out of space (``nospace``: etcd's quota alarm; ``fill``: a full disk)."""

    kind = "disk_pressure"

    def validate(self, spec: ChaosSpec, member_names: list[str]) -> None:
        """Mode, sizes and target; ``fill`` needs root (it mounts a tmpfs)."""
        mode = spec.params.get("mode", "nospace")
        if mode not in MODES:
            raise UsageError(f"disk_pressure: mode {mode!r} (allowed: {', '.join(MODES)})")
        validate_duration(spec)
        if mode == "nospace":
            _int_param(spec, "quota_mb", 8, 2, 1024)
            if spec.target not in ("cluster", "random"):
                raise UsageError("disk_pressure mode nospace hits the whole cluster: target cluster")
        else:
            validate_target(self.kind, spec, member_names)
            _int_param(spec, "size_mb", 192, 130, 4096)  # etcd preallocates 64 MiB WAL segments
            _int_param(spec, "free_kb", 0, 0, 1 << 20)
            if os.geteuid() != 0:
                raise EnvironmentProblem("disk_pressure mode fill mounts a size-capped tmpfs: run as root, "
                                         "or use mode nospace")

    def prepare_members(self, spec: ChaosSpec, specs: list[MemberSpec], runtime: Runtime) -> list[MemberSpec]:
        """Before the cluster starts: the small quota, or a capped filesystem per member."""
        if spec.params.get("mode", "nospace") == "nospace":
            quota = _int_param(spec, "quota_mb", 8, 2, 1024) << 20
            return [MemberSpec(name=s.name, argv=[*s.argv, f"--quota-backend-bytes={quota}"], env=s.env, cwd=s.cwd,
                               log_path=s.log_path) for s in specs]
        size = _int_param(spec, "size_mb", 192, 130, 4096) << 20
        for s in specs:
            runtime.mount_capped(self._data_dir(s), size)
        return specs

    @staticmethod
    def _data_dir(s: MemberSpec) -> Path:
        return Path(next(a.split("=", 1)[1] for a in s.argv if a.startswith("--data-dir=")))

    async def inject(self, spec: ChaosSpec, ctx: ChaosContext) -> Injection:
        """Write ballast until the quota trips, or fill the victim's filesystem."""
        if spec.params.get("mode", "nospace") == "nospace":
            return await self._exhaust_quota(ctx)
        names = sorted(m.name for m in ctx.before.members)
        victim = choose_member(spec.target, ctx.before.leader, names, ctx.rng)
        data = self._data_dir(ctx.runtime.spec(victim))
        st = os.statvfs(data)
        fill = max(0, st.f_bavail * st.f_frsize - _int_param(spec, "free_kb", 0, 0, 1 << 20) * 1024)
        fd = os.open(data / BALLAST_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, fill)
        finally:
            os.close(fd)
        return Injection(target=victim, detail={"mode": "fill", "file": str(data / BALLAST_FILE), "bytes": fill})

    async def _exhaust_quota(self, ctx: ChaosContext) -> Injection:
        url = ctx.subject.endpoint(ctx.before.leader or ctx.before.members[0].name).client_url
        value = base64.b64encode(os.urandom(768 * 1024)).decode()
        written = 0
        for _ in range(2000):
            try:
                r = await ctx.http.post(f"{url}/v3/kv/put", json={"key": BALLAST_KEY, "value": value}, timeout=10.0)
            except httpx.HTTPError:
                await anyio.sleep(0.05)
                continue
            if r.status_code != 200:
                if "space exceeded" in r.text:
                    break
                await anyio.sleep(0.05)
                continue
            written += 1
        return Injection(target="cluster", detail={"mode": "nospace", "ballast_puts": written,
                                                   "ballast_bytes": written * 768 * 1024})

    async def verify(self, injection: Injection, ctx: ChaosContext, timeout_s: float) -> Verification:
        """nospace: every member reports the NOSPACE alarm. fill: the victim's filesystem has
        no room left and the member fails or refuses to write."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if injection.detail["mode"] == "nospace":
                state = await ctx.subject.observe(ctx.http, {n: ctx.runtime.is_running(n) for n in ctx.runtime.members()})
                alarmed = [m.name for m in state.members if any(a.startswith("NOSPACE") for a in m.alarms)]
                if alarmed and len(alarmed) == len(state.members):
                    return Verification(
                        effect=f"NOSPACE alarm raised on every member after {injection.detail['ballast_puts']} large "
                               "writes: the cluster refuses writes",
                        observations={"alarmed": ",".join(alarmed), "db_size": max(m.db_size or 0 for m in state.members)})
            else:
                data = Path(str(injection.detail["file"])).parent
                st = os.statvfs(data)
                free = st.f_bavail * st.f_frsize
                victim = injection.target
                if free < 64 * 1024:  # full; now the member must feel it: crash, or fail its health check
                    running = ctx.runtime.is_running(victim)
                    healthy = False
                    if running:
                        state = await ctx.subject.observe(ctx.http, {n: ctx.runtime.is_running(n)
                                                                     for n in ctx.runtime.members()})
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
        urls = [ctx.subject.endpoint(n).client_url for n in running]
        alarms: list[dict[str, str]] = []
        for url in urls[:1]:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                r = await ctx.http.post(f"{url}/v3/maintenance/alarm", json={"action": "GET"}, timeout=2.0)
                alarms = [a for a in r.json().get("alarms") or [] if a.get("alarm") == "NOSPACE"]
        if not alarms:
            return None
        with contextlib.suppress(httpx.HTTPError, ValueError):
            st = (await ctx.http.post(f"{urls[0]}/v3/maintenance/status", json={}, timeout=2.0)).json()
            rev = int(st["header"]["revision"])
            await ctx.http.post(f"{urls[0]}/v3/kv/compaction", json={"revision": rev, "physical": True}, timeout=10.0)
        for url in urls:
            with contextlib.suppress(httpx.HTTPError):
                await ctx.http.post(f"{url}/v3/maintenance/defragment", json={}, timeout=30.0)
        for a in alarms:
            with contextlib.suppress(httpx.HTTPError):
                await ctx.http.post(f"{urls[0]}/v3/maintenance/alarm", timeout=5.0, json={
                    "action": "DEACTIVATE", "memberID": a.get("memberID", "0"), "alarm": "NOSPACE"})
        return "compacted, defragmented every member, disarmed NOSPACE"
