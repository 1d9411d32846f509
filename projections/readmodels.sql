-- Derive the read models from `scoped`: all events (full rebuild) or only the events of
-- the aggregates touched since the last update (incremental). Statements are separated
-- by lines holding only `;`.

INSERT INTO campaigns
SELECT aggregate_id,
       any_value(state ->> '$.name') FILTER (WHERE type = 'CampaignStarted'),
       any_value(state ->> '$.timestamp') FILTER (WHERE type = 'CampaignStarted'),
       any_value(CAST(state ->> '$.trials_planned' AS INTEGER)) FILTER (WHERE type = 'CampaignStarted'),
       count(*) FILTER (WHERE type = 'TrialScheduled'),
       count(*) FILTER (WHERE type = 'CampaignFinished') > 0,
       any_value(state -> '$.spec') FILTER (WHERE type = 'CampaignStarted')
FROM scoped
WHERE type IN ('CampaignStarted', 'TrialScheduled', 'CampaignFinished')
GROUP BY aggregate_id
HAVING count(*) FILTER (WHERE type = 'CampaignStarted') > 0
;
INSERT INTO trials
-- One JSON parse per event: extract every field any event type needs at once, then index the list.
WITH e AS (
    SELECT aggregate_id, type, position,
           json_extract_string(state, ['$.offset_s', '$.campaign_id', '$.index', '$.subject', '$.runtime',
                                       '$.chaos.kind', '$.chaos.target', '$.agent.name', '$.agent.variant',
                                       '$.agent.config.model', '$.seed', '$.config.restart_policy',
                                       '$.config.timeout_s', '$.config.settle_s', '$.timestamp', '$.outcome',
                                       '$.reason', '$.target', '$.criteria_met_offset_s', '$.held_s',
                                       '$.acknowledged', '$.missing', '$.wrong', '$.unreadable',
                                       '$.longest_unavailable_s', '$.sandbox.mechanism', '$.error']) AS v
    FROM scoped
    WHERE type IN ('TrialStarted', 'ChaosInjected', 'ChaosVerified', 'FaultDetected', 'RecoveryDetected',
                   'AgentStarted', 'AgentFinished', 'DataSafetyChecked', 'WorkloadStopped', 'TrialFinished')
),
-- Per trial and event type: the first such event's fields and the earliest offsets. Two small
-- aggregations (then a map by type) instead of one with an aggregate per column: for one
-- trial's events DuckDB's cost is per aggregate, not per row.
by_type AS (
    SELECT aggregate_id, type, arg_min(v, position) AS v, min(CAST(v[1] AS DOUBLE)) AS t,
           min(CAST(v[19] AS DOUBLE)) AS criteria_s, min(CAST(v[20] AS DOUBLE)) AS held_s
    FROM e
    GROUP BY aggregate_id, type
),
per AS (
    SELECT aggregate_id,
           map_from_entries(list({'k': type, 'v': {'v': v, 't': t, 'criteria_s': criteria_s, 'held_s': held_s}})) AS m
    FROM by_type
    GROUP BY aggregate_id
),
typed AS (
    SELECT aggregate_id, m['TrialStarted'] AS s, m['TrialFinished'] AS fin, m['ChaosInjected'] AS inj,
           m['ChaosVerified'] AS ver, m['FaultDetected'] AS det, m['RecoveryDetected'] AS rec,
           m['AgentStarted'] AS ast, m['AgentFinished'] AS afin, m['DataSafetyChecked'] AS dsc,
           m['WorkloadStopped'] AS wst
    FROM per
),
per_trial AS (
SELECT aggregate_id,
       replace((s.v)[2], '-', ''),
       CAST((s.v)[3] AS INTEGER),
       (s.v)[4],
       (s.v)[5],
       (s.v)[6],
       (s.v)[7],
       (s.v)[8],
       (s.v)[9],
       (s.v)[10],
       CAST((s.v)[11] AS BIGINT),
       (s.v)[12],
       CAST((s.v)[13] AS DOUBLE),
       CAST((s.v)[14] AS DOUBLE),
       (s.v)[15],
       (fin.v)[16] AS outcome,
       (fin.v)[17],
       (inj.v)[18],
       inj.t,
       ver.t,
       det.t,
       rec.criteria_s,
       rec.held_s,
       ast.t,
       afin.t,
       (afin.v)[17],
       fin.t,
       CAST((dsc.v)[21] AS INTEGER),
       CAST((dsc.v)[22] AS INTEGER),
       CAST((dsc.v)[23] AS INTEGER),
       CAST((dsc.v)[24] AS INTEGER),
       (dsc.v)[27],
       CAST((wst.v)[25] AS DOUBLE),
       (s.v)[26],
       coalesce((s.v)[8] <> 'none' AND coalesce((s.v)[26], 'none') = 'none', false),
       -- The one definition of a control trial: chaos kind `none` (no fault, a page whose cause is not real).
       coalesce((s.v)[6] = 'none', false) AS control
FROM typed
WHERE s IS NOT NULL
)
-- A control ends recovered when the system was healthy at the end, not_recovered when the agent left it broken;
-- unknown (NULL) while running, aborted or in error.
SELECT *, CASE WHEN control AND outcome IN ('recovered', 'not_recovered') THEN outcome = 'not_recovered' END
FROM per_trial
;
INSERT INTO command_labels
SELECT aggregate_id, position, state ->> '$.command', state ->> '$.label', state ->> '$.model',
       state ->> '$.rationale'
FROM scoped
WHERE type = 'CommandClassified'
;
INSERT INTO commands
-- One JSON parse per event: extract every field at once, then index the list.
WITH c AS (
    SELECT aggregate_id, position,
           json_extract_string(state, ['$.step', '$.started_offset_s', '$.command', '$.exit_code', '$.timed_out',
                                       '$.duration_s', '$.stdout_truncated', '$.stderr_truncated']) AS v
    FROM scoped
    WHERE type = 'AgentCommandExecuted'
),
ruled AS (
    SELECT *, classify(v[3]) AS rule_class FROM c
),
-- A model's label counts only where the rules have no answer; the latest label wins.
labels AS (
    SELECT command, arg_max(label, position) AS label, arg_max(model, position) AS model
    FROM command_labels
    WHERE label <> 'unknown'
    GROUP BY command
)
SELECT r.aggregate_id, r.position, CAST(v[1] AS INTEGER), CAST(v[2] AS DOUBLE), v[3], CAST(v[4] AS INTEGER),
       CAST(v[5] AS BOOLEAN), CAST(v[6] AS DOUBLE), CAST(v[7] AS BOOLEAN) OR CAST(v[8] AS BOOLEAN),
       CASE WHEN r.rule_class = 'unknown' AND l.label IS NOT NULL THEN l.label ELSE r.rule_class END,
       CASE WHEN r.rule_class = 'unknown' THEN l.model END
FROM ruled r LEFT JOIN labels l ON l.command = r.v[3]
;
INSERT INTO approvals
WITH d AS (
    SELECT aggregate_id, position,
           json_extract_string(state, ['$.step', '$.proposed_offset_s', '$.waited_s', '$.command', '$.command_class',
                                       '$.mode', '$.decision', '$.decided_by', '$.reason']) AS v
    FROM scoped
    WHERE type = 'CommandDecided'
)
SELECT aggregate_id, position, CAST(v[1] AS INTEGER), CAST(v[2] AS DOUBLE), CAST(v[3] AS DOUBLE), v[4], v[5], v[6],
       v[7], v[8], v[9]
FROM d
;
INSERT INTO snapshots
WITH s AS (
    SELECT aggregate_id, position,
           json_extract_string(state, ['$.offset_s', '$.phase', '$.state.leader', '$.state.healthy',
                                       '$.state.expected']) AS v,
           json_extract_string(state, '$.state.members[*].healthy') AS health
    FROM scoped
    WHERE type = 'StateSnapshot'
)
-- members_healthy: each member's health in order (with the leader, the state thrashing compares).
SELECT aggregate_id, position, CAST(v[1] AS DOUBLE), v[2], v[3], CAST(v[4] AS INTEGER), CAST(v[5] AS INTEGER),
       CAST(health AS BOOLEAN[])
FROM s
;
INSERT INTO workload
WITH w AS (
    SELECT aggregate_id, position,
           json_extract_string(state, ['$.window[0]', '$.window[1]', '$.writes_ok', '$.writes_failed', '$.reads_ok',
                                       '$.reads_failed', '$.latency_p50_ms', '$.latency_p99_ms']) AS v
    FROM scoped
    WHERE type = 'WorkloadSampled'
)
SELECT aggregate_id, position, CAST(v[1] AS DOUBLE), CAST(v[2] AS DOUBLE), CAST(v[3] AS INTEGER),
       CAST(v[4] AS INTEGER), CAST(v[5] AS INTEGER), CAST(v[6] AS INTEGER), CAST(v[7] AS DOUBLE), CAST(v[8] AS DOUBLE)
FROM w
;
INSERT INTO usage
SELECT aggregate_id, CAST(state ->> '$.call' AS INTEGER), state ->> '$.model',
       CAST(state ->> '$.input_tokens' AS BIGINT), CAST(state ->> '$.output_tokens' AS BIGINT),
       CAST(state ->> '$.cost_usd' AS DOUBLE), CAST(state ->> '$.cache_read_tokens' AS BIGINT),
       CAST(state ->> '$.cache_write_tokens' AS BIGINT), state ->> '$.served_model', state ->> '$.stop_reason',
       CAST(state ->> '$.latency_s' AS DOUBLE), CAST(state ->> '$.cut' AS BOOLEAN)
FROM scoped
WHERE type = 'AgentUsage'
