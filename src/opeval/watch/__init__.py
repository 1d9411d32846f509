"""The terminal view of trials and campaigns (``opeval watch``, ``opeval run --tui``),
following the event store live or replaying what it holds."""

from opeval.watch._app import WatchApp
from opeval.watch._model import BADGES, CampaignRow, MemberRow, Step, TrialView, badge_of, sparkline

__all__ = ["BADGES", "CampaignRow", "MemberRow", "Step", "TrialView", "WatchApp", "badge_of", "sparkline"]
