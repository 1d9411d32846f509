"""The runner: campaigns and trials, start to finish, recorded as events."""

from opeval.runner._campaign import run_single
from opeval.runner._cleanup import CleanupReport, cleanup, finish_campaign_if_done, mark_aborted
from opeval.runner._trial import TrialRequest, TrialResult, TrialStatus, harness_info, prepare, run_trial

__all__ = [
    "CleanupReport",
    "TrialRequest",
    "TrialResult",
    "TrialStatus",
    "cleanup",
    "finish_campaign_if_done",
    "harness_info",
    "mark_aborted",
    "prepare",
    "run_single",
    "run_trial",
]
