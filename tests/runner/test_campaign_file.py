"""Campaign files: validated with errors naming file, line and key; expanded into trials."""

from __future__ import annotations

from pathlib import Path

import pytest

from opeval.runner import CampaignFileError, load_campaign

CAMPAIGNS = sorted((Path(__file__).parents[2] / "campaigns").glob("*.yaml"))
GOOD = """\
name: t
repetitions: 2
trial:
  timeout_s: 9
chaos:
  - kind: node_kill
    target: follower
  - kind: pause
    params: {duration_s: 2}
variants:
  - name: rb
    agent: runbook
    max_steps: 5
  - name: base
    agent: none
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_a_campaign_expands_into_paired_trials(tmp_path: Path) -> None:
    plan = load_campaign(write(tmp_path, GOOD))
    assert len(plan.trials) == 2 * 2 * 2
    assert [t.index for t in plan.trials] == list(range(8))
    assert plan.config.timeout_s == 9.0 and plan.parallel == 1
    # one seed per repetition, shared by every chaos kind and variant (so comparisons pair)
    assert {t.seed for t in plan.trials if t.repetition == 0} == {1}
    assert {t.seed for t in plan.trials if t.repetition == 1} == {2}
    plan = load_campaign(write(tmp_path, GOOD.replace("    max_steps: 5", "    max_steps: 5\n    tools: [etcdctl]")))
    rb = [t.agent for t in plan.trials if t.agent.variant == "rb"]
    assert rb[0].name == "runbook" and rb[0].config == {"max_steps": 5, "tools": "etcdctl"}
    assert plan.trials[2].chaos.params == {"duration_s": 2} and plan.trials[1].agent.variant == "base"
    assert plan.spec()["sha256"] == plan.sha256 and plan.spec()["resumable"] is True


@pytest.mark.parametrize(("change", "line", "message"), [
    (("    target: follower", "    target: nobody"), 7, "chaos[0].target: unknown target 'nobody'"),
    (("  - kind: pause", "  - kind: flood"), 8, "chaos[1].kind: unknown chaos kind 'flood' (allowed: config_drift, disk_pressure, latency"),
    (("    params: {duration_s: 2}", "    params: {duration_s: -2}"), 9, "chaos[1].params.duration_s: must be a number > 0 and <= 86400, not -2"),
    (("  timeout_s: 9", "  timeout_s: soon"), 4, "trial.timeout_s: must be a number > 0 and <= 86400, not 'soon'"),
    (("  timeout_s: 9", "  timeot_s: 9"), 4, "trial.timeot_s: unknown key (allowed: restart_policy, timeout_s, settle_s, poll_interval_s, snapshot_interval_s, workload_rate_hz, warmup_s, verify_timeout_s); did you mean 'timeout_s'?"),
    (("    agent: runbook", "    agent: gpt"), 12, "variants[0].agent: unknown agent 'gpt' (allowed: none, anthropic, command, openai, runbook)"),
    (("    max_steps: 5", "    max_steps: many"), 13, "variants[0].max_steps: must be a whole number >= 1 and <= 10000, not 'many'"),
    (("    max_steps: 5", "    tools: [kubectl]"), 13, "variants[0].tools: a list of the harness's tools to hand"),
    (("  - name: base", "  - name: rb"), 14, "variants[1].name: 'rb' is used by another variant"),
    (("repetitions: 2", "repetitions: 0"), 2, "repetitions: must be a whole number >= 1 and <= 10000, not 0"),
    (("repetitions: 2", "repetitions: 2\nseeds: [5]"), 2, "repetitions: 2 but 1 seeds given"),
    (("name: t", "name: t\nname: u"), 2, "not valid YAML: duplicate key 'name'"),
    (("    agent: none", "    agent: none\n    model: x"), 16, "variants[1].: agent none (the baseline) takes no settings"),
    (("name: t\n", "name: t\nparalel: 2\n"), 2, "paralel: unknown key (allowed: name, description"),
    (("chaos:\n", "chaos: [\n"), 6, "not valid YAML"),
    (("  - kind: pause", "  - kind: none"), 9, "chaos[1].params: none: unknown parameter 'duration_s' (allowed: alert)"),
    (("    target: follower", "    target: follower\n  - kind: none\n    params: {alert: 3}"), 9,
     "chaos[1].params.alert: must be a non-empty text, not 3"),
])
def test_a_malformed_file_gets_file_line_and_key(tmp_path: Path, change: tuple[str, str], line: int,
                                                 message: str) -> None:
    assert change[0] in GOOD
    path = write(tmp_path, GOOD.replace(change[0], change[1], 1))
    with pytest.raises(CampaignFileError) as e:
        load_campaign(path)
    assert str(e.value).startswith(f"{path}:{line}: "), str(e.value)
    assert message in str(e.value)


def test_a_control_mixes_with_faults_and_has_no_target(tmp_path: Path) -> None:
    plan = load_campaign(write(tmp_path, GOOD.replace("  - kind: pause\n    params: {duration_s: 2}",
                                                      "  - kind: none\n    params: {alert: disk 91% full}")))
    controls = [t.chaos for t in plan.trials if t.chaos.kind == "none"]
    assert len(controls) == 4 and {c.target for c in controls} == {"none"}
    assert controls[0].params == {"alert": "disk 91% full"}


def test_missing_sections_and_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(CampaignFileError, match=r"c\.yaml:1: variants: missing"):
        load_campaign(write(tmp_path, "name: t\nchaos: [{kind: node_kill}]\n"))
    with pytest.raises(CampaignFileError, match="cannot read the campaign file"):
        load_campaign(tmp_path / "absent.yaml")
    with pytest.raises(CampaignFileError, match="a campaign file is a mapping"):
        load_campaign(write(tmp_path, "- just\n- a list\n"))


@pytest.mark.parametrize("path", CAMPAIGNS, ids=lambda p: p.name)
def test_every_shipped_campaign_file_is_valid(path: Path) -> None:
    plan = load_campaign(path)
    assert plan.trials and plan.name


def test_model_agent_settings_reach_the_variant(tmp_path: Path) -> None:
    local = GOOD.replace("  - name: base\n    agent: none\n", (
        "  - {name: local, agent: openai, model: SmolLM2, base_url: 'http://127.0.0.1:8080/v1', max_tokens: 256,\n"
        "     temperature: 0, request_timeout_s: 30, max_retries: 0, tool_choice: required, api_key_env: MY_KEY,\n"
        "     max_turns: 8, continuations: 0}\n"))
    plan = load_campaign(write(tmp_path, local))
    (spec,) = {t.agent.variant: t.agent for t in plan.trials if t.agent.name == "openai"}.values()
    assert spec.config == {"model": "SmolLM2", "base_url": "http://127.0.0.1:8080/v1", "max_tokens": 256,
                           "temperature": 0.0, "request_timeout_s": 30.0, "max_retries": 0,
                           "tool_choice": "required", "api_key_env": "MY_KEY", "max_turns": 8, "continuations": 0}
    with pytest.raises(CampaignFileError, match="tool_choice: one of auto, required, shell, done, not 'always'"):
        load_campaign(write(tmp_path, local.replace("tool_choice: required", "tool_choice: always")))
    with pytest.raises(CampaignFileError, match="max_tokens: must be a whole number >= 1"):
        load_campaign(write(tmp_path, local.replace("max_tokens: 256", "max_tokens: '256'")))
