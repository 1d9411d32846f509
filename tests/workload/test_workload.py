"""The key-value workload's ledger, outages and safety check, against an in-memory client
whose failures are scripted (no cluster)."""

from __future__ import annotations

import anyio

from opeval.workload import KeyValueWorkload, WorkloadWindow


class Client:
    """A store that refuses operations while ``down`` and can lose or change keys."""

    def __init__(self, clock: list[float]) -> None:
        self.data: dict[str, str] = {}
        self.clock = clock
        self.down: tuple[float, float] | None = None
        self.read_back_fails = False

    def _check(self) -> None:
        self.clock[0] += 0.1
        if self.down and self.down[0] <= self.clock[0] < self.down[1]:
            raise ConnectionError("down")

    async def put(self, key: str, value: str) -> None:
        self._check()
        self.data[key] = value

    async def get(self, key: str) -> str | None:
        self._check()
        return self.data.get(key)

    async def get_prefix(self, prefix: str) -> dict[str, str]:
        if self.read_back_fails:
            raise ConnectionError("read-back refused")
        return {k: v for k, v in self.data.items() if k.startswith(prefix)}


def drive(client: Client, clock: list[float], ops: int) -> tuple[KeyValueWorkload, list[WorkloadWindow]]:
    samples: list[WorkloadWindow] = []
    wl = KeyValueWorkload(client, rate_hz=10_000, clock=lambda: clock[0], seed=3,
                          on_sample=lambda w, end: samples.append(w))

    async def main() -> None:
        with anyio.move_on_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wl.run)
                while wl._seq < ops:
                    await anyio.sleep(0)
                tg.cancel_scope.cancel()

    anyio.run(main)
    return wl, samples


def test_every_acknowledged_write_is_in_the_ledger_and_reads_only_acknowledged_keys() -> None:
    clock = [0.0]
    client = Client(clock)
    wl, samples = drive(client, clock, 40)
    assert wl.acknowledged == len(wl.ledger) >= 20
    assert all(client.data[k] == v for k, v in wl.ledger.items())
    assert wl.totals.writes_failed == wl.totals.reads_failed == 0
    assert sum(w.writes_ok for w in samples) == wl.totals.writes_ok  # every window reported once


def test_an_outage_is_one_window_from_the_first_failure_to_the_next_acknowledged_write() -> None:
    clock = [0.0]
    client = Client(clock)
    client.down = (1.0, 2.0)
    wl, _ = drive(client, clock, 40)
    assert len(wl.unavailable) == 1
    (window,) = wl.unavailable
    assert 0.85 <= window.start_s < 1.05 and 2.0 <= window.end_s <= 2.3  # the failing op began just before 1.0
    assert wl.longest_unavailable_s == round(window.end_s - window.start_s, 6)
    assert wl.totals.writes_failed > 0 and wl.totals.reads_failed > 0


def test_the_safety_check_finds_lost_and_changed_writes() -> None:
    clock = [0.0]
    client = Client(clock)
    wl, _ = drive(client, clock, 20)
    keys = list(wl.ledger)
    del client.data[keys[0]]
    client.data[keys[1]] = "tampered"

    safety = anyio.run(wl.check_data)
    assert (safety.missing, safety.wrong, safety.error) == (1, 1, None)
    assert safety.present == wl.acknowledged - 2 and safety.sample_missing == [keys[0]]


def test_a_read_back_that_fails_is_an_error_never_a_pass() -> None:
    clock = [0.0]
    client = Client(clock)
    wl, _ = drive(client, clock, 10)
    client.read_back_fails = True
    safety = anyio.run(wl.check_data)
    assert safety.error and "read-back refused" in safety.error
    assert safety.unreadable == wl.acknowledged and safety.present == 0
