"""The table of malformed inputs, campaign files and flags alike: each is refused with one
line that says what is wrong, the exit code of the table, no traceback, and nothing
started or recorded (no store file, no journal entry, no workspace)."""

from __future__ import annotations

from pathlib import Path

import pytest

from opeval.cli import main
from opeval.cli._exit import ExitCode

QUICKSTART = Path(__file__).parents[2] / "campaigns" / "quickstart.yaml"
BASE = """\
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

#: (case id, change to BASE as (old, new), or a whole file as str, fragment of the message)
FILES: list[tuple[str, tuple[str, str] | str | bytes, str]] = [
    ("timeout-nan", ("timeout_s: 9", "timeout_s: .nan"), "trial.timeout_s: must be a number > 0 and <= 86400, not nan"),
    ("timeout-inf", ("timeout_s: 9", "timeout_s: .inf"), "trial.timeout_s: must be a number > 0 and <= 86400, not inf"),
    ("timeout-minus-inf", ("timeout_s: 9", "timeout_s: -.inf"), "trial.timeout_s: must be a number > 0"),
    ("timeout-overflow", ("timeout_s: 9", "timeout_s: 1e400"), "trial.timeout_s: must be a number > 0"),
    ("timeout-zero", ("timeout_s: 9", "timeout_s: 0"), "trial.timeout_s: must be a number > 0"),
    ("timeout-bool", ("timeout_s: 9", "timeout_s: yes"), "not True"),
    ("timeout-text", ("timeout_s: 9", "timeout_s: '9'"), "not '9'"),
    ("settle-negative", ("timeout_s: 9", "settle_s: -1"), "trial.settle_s: must be a number >= 0"),
    ("rate-zero", ("timeout_s: 9", "workload_rate_hz: 0"), "trial.workload_rate_hz: must be a number > 0"),
    ("rate-huge", ("timeout_s: 9", "workload_rate_hz: 1e9"), "trial.workload_rate_hz: must be a number > 0 and <= 10000"),
    ("poll-nan", ("timeout_s: 9", "poll_interval_s: .nan"), "trial.poll_interval_s: must be a number >= 0.01"),
    ("restart-policy", ("timeout_s: 9", "restart_policy: always"),
     "trial.restart_policy: must be one of on-failure, never, not 'always'"),
    ("trial-typo", ("timeout_s: 9", "timout_s: 9"), "did you mean 'timeout_s'?"),
    ("trial-members", ("timeout_s: 9", "members: 3"), "trial.members: unknown key"),
    ("trial-not-mapping", ("trial:\n  timeout_s: 9\n", "trial: 9\n"), "trial: expected a mapping"),
    ("repetitions-huge", ("repetitions: 2", "repetitions: 100000000000"),
     "repetitions: must be a whole number >= 1 and <= 10000, not 100000000000"),
    ("repetitions-zero", ("repetitions: 2", "repetitions: 0"), "repetitions: must be a whole number >= 1"),
    ("repetitions-float", ("repetitions: 2", "repetitions: 1.5"), "repetitions: must be a whole number"),
    ("repetitions-inf", ("repetitions: 2", "repetitions: .inf"), "repetitions: must be a whole number"),
    ("plan-too-large", ("repetitions: 2", "repetitions: 5000"), "the plan has 20000 trials"),
    ("seeds-huge", ("repetitions: 2", "seeds: [1, 100000000000000000000000]"), "seeds: must be a non-empty list"),
    ("seeds-twice", ("repetitions: 2", "seeds: [4, 4]"), "seeds: 4 is listed twice"),
    ("seeds-empty", ("repetitions: 2", "seeds: []"), "seeds: must be a non-empty list"),
    ("seed-negative", ("repetitions: 2", "repetitions: 2\nseed: -4"), "seed: must be a whole number from 0"),
    ("seed-text", ("repetitions: 2", "repetitions: 2\nseed: abc"), "seed: must be a whole number"),
    ("parallel-zero", ("repetitions: 2", "repetitions: 2\nparallel: 0"), "parallel: must be a whole number >= 1"),
    ("parallel-huge", ("repetitions: 2", "repetitions: 2\nparallel: 100000"), "parallel: must be a whole number >= 1 and <= 64"),
    ("members-zero", ("repetitions: 2", "repetitions: 2\nmembers: 0"), "members: must be a whole number >= 1"),
    ("members-too-many", ("repetitions: 2", "repetitions: 2\nmembers: 12"), "members: must be between 1 and 9"),
    ("members-nan", ("repetitions: 2", "repetitions: 2\nmembers: .nan"), "members: must be a whole number"),
    ("param-typo", ("params: {duration_s: 2}", "params: {duraton_s: 5}"),
     "chaos[1].params: pause: unknown parameter 'duraton_s' (allowed: duration_s); did you mean 'duration_s'?"),
    ("param-nan", ("params: {duration_s: 2}", "params: {duration_s: .nan}"), "chaos[1].params.duration_s: must be a number > 0"),
    ("param-inf", ("params: {duration_s: 2}", "params: {duration_s: .inf}"), "chaos[1].params.duration_s: must be a number > 0"),
    ("param-negative", ("params: {duration_s: 2}", "params: {duration_s: -2}"), "chaos[1].params.duration_s: must be"),
    ("param-text", ("params: {duration_s: 2}", "params: {duration_s: soon}"), "not 'soon'"),
    ("param-nested", ("params: {duration_s: 2}", "params: {duration_s: [2]}"), "params: must be a mapping of names to plain values"),
    ("params-not-mapping", ("params: {duration_s: 2}", "params: 5"), "params: must be a mapping"),
    ("params-null", ("params: {duration_s: 2}", "params: ~"), "params: must be a mapping"),
    ("param-int-key", ("params: {duration_s: 2}", "params: {1: 2}"), "unknown parameter 1"),
    ("node-kill-params", ("    target: follower", "    target: follower\n    params: {delay_ms: 3}"),
     "chaos[0].params: node_kill: unknown parameter 'delay_ms' (allowed: none: it takes no parameters)"),
    ("latency-zero", ("  - kind: pause\n    params: {duration_s: 2}", "  - kind: latency\n    params: {delay_ms: 0}"),
     "chaos[1].params.delay_ms: must be a number >= 1 and <= 10000, not 0"),
    ("disk-mode", ("  - kind: pause\n    params: {duration_s: 2}",
                   "  - kind: disk_pressure\n    target: cluster\n    params: {mode: flood}"),
     "chaos[1].params.mode: must be one of nospace, fill, not 'flood'"),
    ("disk-quota-float", ("  - kind: pause\n    params: {duration_s: 2}",
                          "  - kind: disk_pressure\n    target: cluster\n    params: {quota_mb: 2.5}"),
     "chaos[1].params.quota_mb: must be a whole number >= 2 and <= 1024, not 2.5"),
    ("control-alert-empty", ("  - kind: pause\n    params: {duration_s: 2}", "  - kind: none\n    params: {alert: ''}"),
     "chaos[1].params.alert: must be a non-empty text"),
    ("kind-unknown", ("  - kind: pause", "  - kind: flood"), "chaos[1].kind: unknown chaos kind 'flood'"),
    ("kind-missing", ("  - kind: pause\n", "  - target: random\n"), "chaos[1].kind: missing"),
    ("target-unknown", ("    target: follower", "    target: nobody"), "chaos[0].target: unknown target 'nobody'"),
    ("target-number", ("    target: follower", "    target: 5"), "chaos[0].target: must be a role or a member name"),
    ("chaos-empty", ("chaos:\n  - kind: node_kill\n    target: follower\n  - kind: pause\n    params: {duration_s: 2}\n",
                     "chaos: []\n"), "chaos: must be a non-empty list"),
    ("variant-max-steps-zero", ("    max_steps: 5", "    max_steps: 0"), "variants[0].max_steps: must be a whole number >= 1"),
    ("variant-timeout-nan", ("    max_steps: 5", "    command_timeout_s: .nan"), "variants[0].command_timeout_s: must be a number > 0"),
    ("variant-temperature", ("    max_steps: 5", "    temperature: 7"), "variants[0].temperature: must be a number >= 0 and <= 2"),
    ("variant-typo", ("    max_steps: 5", "    max_step: 5"), "did you mean 'max_steps'?"),
    ("variant-agent", ("    agent: runbook", "    agent: gpt"), "variants[0].agent: unknown agent 'gpt'"),
    ("top-typo", ("name: t\n", "name: t\nrepetitons: 2\n"), "repetitons: unknown key"),
    ("subject-unknown", ("name: t\n", "name: t\nsubject: zookeeper\n"), "subject: unknown subject 'zookeeper'"),
    ("runtime-unknown", ("name: t\n", "name: t\nruntime: k8s\n"), "runtime: unknown runtime 'k8s'"),
    ("name-empty", ("name: t\n", "name: ''\n"), "name: must be a non-empty string"),
    ("empty-file", "", "a campaign file is a mapping"),
    ("a-list", "- a\n- b\n", "a campaign file is a mapping"),
    ("not-yaml", "name: [unclosed\n", "not valid YAML"),
    ("list-key", "? [a, b]\n: 1\n", "a key must be a plain word"),
    ("binary", b"\xff\xfe\x00garbage", "not a text file"),
    ("tabs", "name: t\n\tchaos: []\n", "not valid YAML"),
    ("prompt-missing", ("    max_steps: 5", "    system_prompt: absent.md"), "variants[0].system_prompt: cannot read"),
    ("merge-key", ("name: t\n", "name: t\nbase: &b {timeout_s: 9}\n"), "base: unknown key"),
    ("python-tag", ("name: t\n", "name: !!python/object:os.system t\n"), "not valid YAML"),
    ("null-key", ("name: t\n", "name: t\n~: 5\n"), "None: unknown key"),
]

#: (case id, flags of `opeval run`, fragment of the message, exit code)
FLAGS: list[tuple[str, list[str], str, int]] = [
    ("rate-zero", ["--rate", "0"], "--rate must be a number > 0 and <= 10000, not 0.0", 2),
    ("rate-negative", ["--rate", "-5"], "--rate must be a number > 0", 2),
    ("rate-nan", ["--rate", "nan"], "--rate must be a number > 0", 2),
    ("rate-inf", ["--rate", "inf"], "--rate must be a number > 0", 2),
    ("members-zero", ["--members", "0"], "--members must be a whole number >= 1", 2),
    ("members-negative", ["--members", "-1"], "--members must be a whole number >= 1", 2),
    ("members-too-many", ["--members", "12"], "--members must be between 1 and 9", 2),
    ("members-word", ["--members", "three"], "--members", 2),
    ("timeout-zero", ["--timeout", "0"], "--timeout must be a number > 0", 2),
    ("timeout-nan", ["--timeout", "nan"], "--timeout must be a number > 0", 2),
    ("timeout-inf", ["--timeout", "inf"], "--timeout must be a number > 0", 2),
    ("settle-negative", ["--settle", "-1"], "--settle must be a number >= 0", 2),
    ("settle-nan", ["--settle", "nan"], "--settle must be a number >= 0", 2),
    ("seed-negative", ["--seed", "-1"], "--seed must be a whole number >= 0", 2),
    ("seed-huge", ["--seed", str(2**70)], "--seed must be a whole number >= 0", 2),
    ("max-steps-zero", ["--agent", "runbook", "--max-steps", "0"], "--max-steps must be a whole number >= 1", 2),
    ("command-timeout-nan", ["--agent", "runbook", "--command-timeout", "nan"], "--command-timeout must be a number > 0", 2),
    ("restart-policy", ["--restart-policy", "always"], "--restart-policy must be one of on-failure, never", 2),
    ("alert-without-control", ["--alert", "disk full"], "--alert is the page of a control trial", 2),
    ("alert-empty", ["--chaos", "none", "--alert", " "], "alert must be a non-empty text", 2),
    ("chaos-unknown", ["--chaos", "meteor"], "unknown chaos kind 'meteor'", 2),
    ("target-unknown", ["--target", "etcd-7"], "unknown target 'etcd-7' for node_kill", 2),
    ("subject-unknown", ["--subject", "zookeeper"], "unknown subject 'zookeeper'", 2),
    ("agent-unknown", ["--agent", "gpt"], "unknown agent 'gpt'", 2),
    ("parallel-outside-campaign", ["--parallel", "2"], "--parallel, --resume, --executor and a file are for campaigns", 2),
    ("unknown-option", ["--rat", "5"], "--rat", 2),
    ("rate-overflow", ["--rate", "1e400"], "--rate must be a number > 0", 2),
    ("members-float", ["--members", "2.5"], "--members must be a whole number, not '2.5'", 2),
    ("max-steps-float", ["--agent", "runbook", "--max-steps", "1.5"], "--max-steps must be a whole number", 2),
    ("seed-float", ["--seed", "7.0"], "--seed must be a whole number, not '7.0'", 2),
    ("prompt-directory", ["--agent", "runbook", "--system-prompt", "/"], "cannot read --system-prompt /", 2),
]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:  # any other exception is a traceback: the test fails
        main(argv)
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def _nothing_started(store: Path, runtime_dir: Path) -> None:
    assert not store.exists(), "the store was created"
    for folder in ("journal", "trials"):
        assert not list((runtime_dir / folder).glob("*")) if (runtime_dir / folder).exists() else True, folder


def _one_line(err: str, fragment: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("opeval: error: ") and fragment in lines[0], lines[0]


@pytest.mark.parametrize(("change", "fragment"), [pytest.param(c, f, id=i) for i, c, f in FILES])
def test_a_malformed_campaign_file_is_refused(change: tuple[str, str] | str | bytes, fragment: str, tmp_path: Path,
                                             runtime_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    if isinstance(change, tuple):
        assert change[0] in BASE
        path.write_text(BASE.replace(change[0], change[1], 1))
    elif isinstance(change, bytes):
        path.write_bytes(change)
    else:
        path.write_text(change)
    store = tmp_path / "events.db"
    code, _, err = _run(["run", "campaign", str(path), "--store", str(store)], capsys)
    assert code == ExitCode.USAGE
    _one_line(err, fragment)
    assert str(path) in err  # the message names the file
    _nothing_started(store, runtime_dir)


@pytest.mark.parametrize(("flags", "fragment", "code"), [pytest.param(a, f, c, id=i) for i, a, f, c in FLAGS])
def test_a_malformed_flag_is_refused(flags: list[str], fragment: str, code: int, tmp_path: Path, runtime_dir: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "events.db"
    got, _, err = _run(["run", *flags, "--store", str(store)], capsys)
    assert got == code
    _one_line(err, fragment)
    _nothing_started(store, runtime_dir)


#: Other files a run or an analysis reads: (id, content, message fragment).
PRICES = [
    ("not-yaml", "m: [1, 2\n", "not valid YAML"),
    ("not-a-mapping", "- [1, 2]\n", "not a mapping of model name"),
    ("nan", "m: [1, .nan]\n", "finite and not negative"),
    ("negative", "m: [-1, 2]\n", "finite and not negative"),
    ("three-numbers", "m: [1, 2, 3]\n", "a price is [input, output]"),
    ("a-number", "m: 3\n", "a price is [input, output]"),
    ("words", "m: [one, two]\n", "a price is [input, output]"),
    ("booleans", "m: [true, false]\n", "a price is [input, output]"),
    ("not-utf8", b"m: [1, 2]\xff\n", "not valid YAML"),
    ("nested", "m: " + "[" * 2000 + "\n", "not valid YAML"),
]


@pytest.mark.parametrize(("content", "fragment"), [pytest.param(c, f, id=i) for i, c, f in PRICES])
def test_a_malformed_prices_file_is_refused_before_a_trial_starts(
        content: str | bytes, fragment: str, tmp_path: Path, runtime_dir: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_bytes(content if isinstance(content, bytes) else content.encode())
    monkeypatch.setenv("OPEVAL_PRICES", str(prices))
    store = tmp_path / "events.db"
    code, _, err = _run(["run", "--agent", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                         "--store", str(store)], capsys)
    assert code == ExitCode.USAGE
    _one_line(err, fragment)
    assert str(prices) in err and "OPEVAL_PRICES" in err
    _nothing_started(store, runtime_dir)


@pytest.mark.parametrize(("content", "fragment"), [
    pytest.param("name: x\nthresholds: [1,\n", "not valid YAML", id="not-yaml"),
    pytest.param("a: " + "[" * 2000 + "\n", "not valid YAML", id="nested"),
    pytest.param("- 1\n", "must be a mapping", id="a-list")])
@pytest.mark.parametrize("command", [["analyze", "0123abcd"], ["watch", "0123abcd"], ["run", "--tui"],
                                     ["run", "campaign", str(QUICKSTART), "--tui"]],
                         ids=lambda c: " ".join(c[:1] + c[-1:]))
def test_a_malformed_rule_set_is_refused(command: list[str], content: str, fragment: str, tmp_path: Path,
                                         runtime_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(content)
    store = tmp_path / "events.db"
    code, _, err = _run([*command, "--rules", str(rules), "--store", str(store)], capsys)
    assert code == ExitCode.USAGE
    _one_line(err, fragment)
    assert str(rules) in err
    _nothing_started(store, runtime_dir)


def test_rules_for_run_go_with_the_view(tmp_path: Path, runtime_dir: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """``run --rules`` sets only the full-screen view's thrashing marks: without ``--tui`` it is refused."""
    rules = Path(__file__).parents[2] / "projections/rules/default.yaml"
    store = tmp_path / "events.db"
    code, _, err = _run(["run", "--baseline", "--rules", str(rules), "--store", str(store)], capsys)
    assert code == ExitCode.USAGE
    _one_line(err, "--rules goes with --tui")
    _nothing_started(store, runtime_dir)


def test_the_table_is_large_enough() -> None:
    assert len(FILES) + len(FLAGS) >= 60
