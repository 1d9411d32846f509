"""The runner: campaigns and trials, start to finish, recorded as events."""

from opeval.runner._campaign import CampaignRun, run_campaign, run_single
from opeval.runner._campaign_file import CampaignFileError, CampaignPlan, PlannedTrial, load_campaign
from opeval.runner._cleanup import CleanupReport, cleanup, finish_campaign_if_done, mark_aborted
from opeval.runner._ray import RayOptions
from opeval.runner._trial import TrialRequest, TrialResult, TrialStatus, harness_info, prepare, run_trial

__all__ = [
    "CampaignFileError",
    "CampaignPlan",
    "CampaignRun",
    "PlannedTrial",
    "RayOptions",
    "CleanupReport",
    "TrialRequest",
    "TrialResult",
    "TrialStatus",
    "cleanup",
    "finish_campaign_if_done",
    "harness_info",
    "load_campaign",
    "mark_aborted",
    "prepare",
    "run_campaign",
    "run_single",
    "run_trial",
]
