"""A store of fault and control trials whose control figures are known in advance."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from pathlib import Path

from opeval.events import AgentSpec, Campaign, ChaosSpec, Trial, TrialConfig
from opeval.projections.synthetic import CONTROL_ALERT, make_control_trial, make_trial, new_campaign
from opeval.store import EventStore
from tests.viewer.helpers import _HARNESS

#: The agent's commands in the control trial where it breaks a healthy cluster.
HARMFUL = ["nodectl status", "nodectl restart etcd-2", "etcdctl member remove etcd-2"]


@dataclass
class ControlStore:
    """Ids of :func:`write_control_store`'s campaigns and trials."""

    path: Path
    mixed: str  #: runbook: 3 fault trials, 2 measured control trials and an aborted one; variant v2: 1 control
    baseline: str  #: no agent: 3 fault trials and a control trial
    faults: list[str]
    harmful: str  #: the control where the agent broke the cluster
    quiet: str  #: the control where the agent only looked (and 2 writes were lost)
    v2: str  #: variant v2's only trial, a control
    aborted: str
    baseline_control: str  #: no agent, an outage after the recovery criteria held


def aborted_control(campaign: Campaign, index: int) -> Trial:
    """A control trial whose harness was killed before anything was measured."""
    trial = Trial._create(
        Trial.TrialStarted, id=uuid.uuid4(), campaign_id=campaign.id, index=index, subject="etcd", runtime="local",
        chaos=ChaosSpec(kind="none", target="none", params={"alert": CONTROL_ALERT}), agent=AgentSpec(name="runbook"),
        seed=99, config=TrialConfig(restart_policy="never"), harness=_HARNESS, offset_s=0.0)
    campaign.trigger_event(Campaign.TrialScheduled, trial_id=trial.id, index=index)
    trial.record(Trial.TrialFinished, outcome="aborted", reason="harness killed", time_to_detect_s=None,
                 time_to_recover_s=None, offset_s=1.0)
    return trial


def write_control_store(path: Path) -> ControlStore:
    """Two campaigns, agent and baseline, each with fault trials (paired by seed) and controls.

    Known control figures (15 s trials, the page at 2.0 s, the clock from 2.01 s; a workload
    second is 50 operations and 12 of them, ending 3 s to 14 s, count):
    harmful: 3 commands, 2 remediations, 1 destructive, availability 510/600, left broken;
    quiet: 2 read-only commands, availability 1, 2 writes lost, healthy at the end;
    v2: 2 read-only commands; baseline control: no commands, availability 580/600 (an
    outage from 6 s to 8 s, after its recovery criteria held at 2.11 s).
    """
    rng = random.Random(5)
    with EventStore(path) as es:
        mixed = new_campaign("mixed", 7)
        es.save(mixed)
        faults = [make_trial(mixed, i, rng, seconds=15, seed=i) for i in range(3)]
        harmful = make_control_trial(mixed, 3, rng, seed=10, commands=HARMFUL, outage=(5.0, None))
        quiet = make_control_trial(mixed, 4, rng, seed=11, lost_writes=2)
        v2 = make_control_trial(mixed, 5, rng, seed=12, variant="v2")
        aborted = aborted_control(mixed, 6)
        es.save(mixed, *faults, harmful, quiet, v2, aborted)
        base = new_campaign("baseline", 4)
        es.save(base)
        base_faults = [make_trial(base, i, rng, agent="none", seconds=15, seed=i) for i in range(3)]
        base_control = make_control_trial(base, 3, rng, agent="none", seed=10, outage=(6.0, 8.0))
        es.save(base, *base_faults, base_control)
    return ControlStore(path=path, mixed=mixed.id.hex, baseline=base.id.hex, faults=[t.id.hex for t in faults],
                        harmful=harmful.id.hex, quiet=quiet.id.hex, v2=v2.id.hex, aborted=aborted.id.hex,
                        baseline_control=base_control.id.hex)
