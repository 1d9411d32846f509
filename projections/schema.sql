-- Read models of the opeval event log (DuckDB). Everything here is derived from the
-- `events` table, itself a copy of the event store; nothing is ever written back.

CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);

-- One row per stored event, in log order: the raw material of every other table.
CREATE TABLE IF NOT EXISTS events (
    position BIGINT, aggregate_id VARCHAR, version INTEGER, type VARCHAR, state VARCHAR
);

CREATE TABLE IF NOT EXISTS campaigns (
    campaign_id VARCHAR, name VARCHAR, started_at VARCHAR, trials_planned INTEGER,
    trials_scheduled INTEGER, finished BOOLEAN, spec VARCHAR
);

CREATE TABLE IF NOT EXISTS trials (
    trial_id VARCHAR, campaign_id VARCHAR, idx INTEGER, subject VARCHAR, runtime VARCHAR,
    chaos VARCHAR, target VARCHAR, agent VARCHAR, variant VARCHAR, model VARCHAR, seed BIGINT,
    restart_policy VARCHAR, timeout_s DOUBLE, settle_s DOUBLE, started_at VARCHAR,
    outcome VARCHAR, reason VARCHAR, victim VARCHAR,
    injected_s DOUBLE, verified_s DOUBLE, detected_s DOUBLE, recovered_s DOUBLE, held_s DOUBLE,
    agent_started_s DOUBLE, agent_finished_s DOUBLE, agent_stop VARCHAR, finished_s DOUBLE,
    acknowledged INTEGER, missing INTEGER, wrong INTEGER, unreadable INTEGER,
    -- why the read-back of acknowledged writes failed, if it did (DataSafetyChecked.error)
    data_error VARCHAR,
    longest_unavailable_s DOUBLE,
    -- how the agent was isolated (NULL: no agent, or not recorded); unisolated: an agent that could reach the harness
    sandbox VARCHAR, unisolated BOOLEAN,
    -- a control trial: chaos kind `none`, no fault injected, the agent paged with an alert whose cause is not real
    control BOOLEAN,
    -- a control trial the agent left unhealthy (outcome not_recovered); NULL for fault trials and for
    -- controls not finished as recovered or not_recovered (running, aborted, error)
    left_broken BOOLEAN
);

-- Labels a model gave to commands the rules left unknown (CommandClassified events).
CREATE TABLE IF NOT EXISTS command_labels (
    labels_id VARCHAR, position BIGINT, command VARCHAR, label VARCHAR, model VARCHAR, rationale VARCHAR
);

-- class: the rules' class, or, where the rules said unknown, the latest model label
-- (labelled_by names the model).
CREATE TABLE IF NOT EXISTS commands (
    trial_id VARCHAR, position BIGINT, step INTEGER, offset_s DOUBLE, command VARCHAR,
    exit_code INTEGER, timed_out BOOLEAN, duration_s DOUBLE, truncated BOOLEAN, class VARCHAR,
    labelled_by VARCHAR
);

-- The approval gate's decisions (CommandDecided): one row per gated command; waited_s is the agent's
-- time waiting for a person, which time to recover leaves out.
CREATE TABLE IF NOT EXISTS approvals (
    trial_id VARCHAR, position BIGINT, step INTEGER, proposed_s DOUBLE, waited_s DOUBLE, command VARCHAR,
    class VARCHAR, mode VARCHAR, decision VARCHAR, decided_by VARCHAR, reason VARCHAR
);

CREATE TABLE IF NOT EXISTS snapshots (
    trial_id VARCHAR, position BIGINT, offset_s DOUBLE, phase VARCHAR, leader VARCHAR,
    healthy INTEGER, expected INTEGER, members_healthy BOOLEAN[]
);

CREATE TABLE IF NOT EXISTS workload (
    trial_id VARCHAR, position BIGINT, start_s DOUBLE, end_s DOUBLE, writes_ok INTEGER,
    writes_failed INTEGER, reads_ok INTEGER, reads_failed INTEGER, p50_ms DOUBLE, p99_ms DOUBLE
);

-- One row per model API call; input_tokens exclude the cache's, so a call's tokens are the four summed.
CREATE TABLE IF NOT EXISTS usage (
    trial_id VARCHAR, call INTEGER, model VARCHAR, input_tokens BIGINT, output_tokens BIGINT,
    cost_usd DOUBLE, cache_read_tokens BIGINT, cache_write_tokens BIGINT, served_model VARCHAR,
    stop_reason VARCHAR, latency_s DOUBLE, cut BOOLEAN
);

-- Rule sets ever used for scoring; a rebuild re-scores every one of them.
CREATE TABLE IF NOT EXISTS rule_sets (name VARCHAR, hash VARCHAR, source VARCHAR, PRIMARY KEY (name, hash));

-- Control trials (trials.control) have no fault to detect or recover from: recovered, ttd_s, ttr_s,
-- speed and composite are NULL for them, and availability covers the whole trial after ChaosVerified.
-- remediations: commands classed remediation or destructive (every trial).
CREATE TABLE IF NOT EXISTS scores (
    rule_set VARCHAR, rule_hash VARCHAR, trial_id VARCHAR, recovered BOOLEAN,
    ttd_s DOUBLE, first_diagnostic_s DOUBLE, first_remediation_s DOUBLE, ttr_s DOUBLE,
    availability DOUBLE, lost_writes INTEGER, safe BOOLEAN, commands INTEGER, unique_commands INTEGER,
    thrashing INTEGER, destructive INTEGER, tokens BIGINT, cost_usd DOUBLE, speed DOUBLE, composite DOUBLE,
    remediations INTEGER
);
