"""The incident clock: time to detect and time to recover, defined once.

Both count from the fault's verification (``ChaosVerified.offset_s``), over offsets the
log holds: detection is the first ``FaultDetected``'s offset, recovery the moment the
criteria first held (``RecoveryDetected.criteria_met_offset_s``). The runner records
these values in ``TrialFinished`` and the read models compute their ``ttd_s`` and
``ttr_s`` columns with these very functions (registered in DuckDB), so ``run``, ``show``,
``analyze``, the viewer, ``watch`` and the export show one number for one trial.
"""

from __future__ import annotations


def time_to_detect(verified_s: float | None, detected_s: float | None) -> float | None:
    """Seconds from the fault verified to the monitor's first alert (None: either is
    missing). Never negative: symptoms seen before the verification count from it."""
    if verified_s is None or detected_s is None:
        return None
    return max(0.0, detected_s - verified_s)


def time_to_recover(verified_s: float | None, recovered_s: float | None, waited_s: float | None = 0.0) -> float | None:
    """Seconds from the fault verified to the recovery criteria first holding, less the
    time the agent's commands waited for a person's decision (None: either is missing)."""
    if verified_s is None or recovered_s is None:
        return None
    return max(0.0, recovered_s - verified_s - (waited_s or 0.0))


def clock_text(ttd_s: float | None, ttr_s: float | None) -> str:
    """``TTD 0.301s, TTR 4.120s`` (``-`` for a missing value), as ``run`` and ``show`` print them."""
    ttd = "-" if ttd_s is None else f"{ttd_s:.3f}s"
    ttr = "-" if ttr_s is None else f"{ttr_s:.3f}s"
    return f"TTD {ttd}, TTR {ttr}"
