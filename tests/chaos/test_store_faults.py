"""Every fault of the rate limiter, in a real trial: injected, verified by its effect,
reverted, nothing left behind (the chaos contract), plus what each one must have done."""

from __future__ import annotations

from typing import ClassVar

import pytest

from opeval.testing import ChaosContract

pytestmark = pytest.mark.integration


class _OnRateLimiter(ChaosContract):
    subject_name = "ratelimiter"


class TestNodeKillOnRateLimiter(_OnRateLimiter):
    kind = "node_kill"
    target = "leader"  # the Redis primary: Sentinel fails over


class TestPauseOnRateLimiter(_OnRateLimiter):
    reverts = True
    kind = "pause"
    params: ClassVar[dict[str, object]] = {"duration_s": 1}


class TestWritePauseOnRateLimiter(_OnRateLimiter):
    reverts = True
    kind = "write_pause"
    target = "leader"
    params: ClassVar[dict[str, object]] = {"duration_s": 1}


class TestStoreCutOnRateLimiter(_OnRateLimiter):
    reverts = True
    kind = "store_cut"
    params: ClassVar[dict[str, object]] = {"duration_s": 1}


class TestStoreLatencyOnRateLimiter(_OnRateLimiter):
    reverts = True
    kind = "store_latency"
    params: ClassVar[dict[str, object]] = {"duration_s": 1, "delay_ms": 40}  # a round trip stays in the timeout


class TestMemoryPressureOnRateLimiter(_OnRateLimiter):
    reverts = True
    kind = "memory_pressure"
    target = "leader"
    params: ClassVar[dict[str, object]] = {"duration_s": 1}


class TestTrafficBurstOnRateLimiter(_OnRateLimiter):
    reverts = True
    kind = "traffic_burst"
    target = "cluster"
    params: ClassVar[dict[str, object]] = {"duration_s": 1}


class TestConfigDriftOnRateLimiter(_OnRateLimiter):
    reverts = True
    kind = "config_drift"


class TestControlOnRateLimiter(_OnRateLimiter):
    kind = "none"
    target = "none"
