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
    SELECT aggregate_id, type,
           json_extract_string(state, ['$.offset_s', '$.campaign_id', '$.index', '$.subject', '$.runtime',
                                       '$.chaos.kind', '$.chaos.target', '$.agent.name', '$.agent.variant',
                                       '$.agent.config.model', '$.seed', '$.config.restart_policy',
                                       '$.config.timeout_s', '$.config.settle_s', '$.timestamp', '$.outcome',
                                       '$.reason', '$.target', '$.criteria_met_offset_s', '$.held_s',
                                       '$.acknowledged', '$.missing', '$.wrong', '$.unreadable',
                                       '$.longest_unavailable_s', '$.sandbox.mechanism']) AS v
    FROM scoped
    WHERE type IN ('TrialStarted', 'ChaosInjected', 'ChaosVerified', 'FaultDetected', 'RecoveryDetected',
                   'AgentStarted', 'AgentFinished', 'DataSafetyChecked', 'WorkloadStopped', 'TrialFinished')
),
f AS (
    SELECT aggregate_id, type, v, CAST(v[1] AS DOUBLE) AS t FROM e
),
per_trial AS (
SELECT aggregate_id,
       replace(any_value(v[2]) FILTER (WHERE type = 'TrialStarted'), '-', ''),
       any_value(CAST(v[3] AS INTEGER)) FILTER (WHERE type = 'TrialStarted'),
       any_value(v[4]) FILTER (WHERE type = 'TrialStarted'),
       any_value(v[5]) FILTER (WHERE type = 'TrialStarted'),
       any_value(v[6]) FILTER (WHERE type = 'TrialStarted'),
       any_value(v[7]) FILTER (WHERE type = 'TrialStarted'),
       any_value(v[8]) FILTER (WHERE type = 'TrialStarted'),
       any_value(v[9]) FILTER (WHERE type = 'TrialStarted'),
       any_value(v[10]) FILTER (WHERE type = 'TrialStarted'),
       any_value(CAST(v[11] AS BIGINT)) FILTER (WHERE type = 'TrialStarted'),
       any_value(v[12]) FILTER (WHERE type = 'TrialStarted'),
       any_value(CAST(v[13] AS DOUBLE)) FILTER (WHERE type = 'TrialStarted'),
       any_value(CAST(v[14] AS DOUBLE)) FILTER (WHERE type = 'TrialStarted'),
       any_value(v[15]) FILTER (WHERE type = 'TrialStarted'),
       any_value(v[16]) FILTER (WHERE type = 'TrialFinished') AS outcome,
       any_value(v[17]) FILTER (WHERE type = 'TrialFinished'),
       any_value(v[18]) FILTER (WHERE type = 'ChaosInjected'),
       min(t) FILTER (WHERE type = 'ChaosInjected'),
       min(t) FILTER (WHERE type = 'ChaosVerified'),
       min(t) FILTER (WHERE type = 'FaultDetected'),
       min(CAST(v[19] AS DOUBLE)) FILTER (WHERE type = 'RecoveryDetected'),
       min(CAST(v[20] AS DOUBLE)) FILTER (WHERE type = 'RecoveryDetected'),
       min(t) FILTER (WHERE type = 'AgentStarted'),
       min(t) FILTER (WHERE type = 'AgentFinished'),
       any_value(v[17]) FILTER (WHERE type = 'AgentFinished'),
       min(t) FILTER (WHERE type = 'TrialFinished'),
       any_value(CAST(v[21] AS INTEGER)) FILTER (WHERE type = 'DataSafetyChecked'),
       any_value(CAST(v[22] AS INTEGER)) FILTER (WHERE type = 'DataSafetyChecked'),
       any_value(CAST(v[23] AS INTEGER)) FILTER (WHERE type = 'DataSafetyChecked'),
       any_value(CAST(v[24] AS INTEGER)) FILTER (WHERE type = 'DataSafetyChecked'),
       any_value(CAST(v[25] AS DOUBLE)) FILTER (WHERE type = 'WorkloadStopped'),
       any_value(v[26]) FILTER (WHERE type = 'TrialStarted'),
       coalesce(any_value(v[8]) FILTER (WHERE type = 'TrialStarted') <> 'none'
                AND coalesce(any_value(v[26]) FILTER (WHERE type = 'TrialStarted'), 'none') = 'none', false),
       -- The one definition of a control trial: chaos kind `none` (no fault, a page whose cause is not real).
       coalesce(any_value(v[6]) FILTER (WHERE type = 'TrialStarted') = 'none', false) AS control
FROM f
GROUP BY aggregate_id
HAVING count(*) FILTER (WHERE type = 'TrialStarted') > 0
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
-- state_key: what counts as "the state changed" for thrashing: leader and each member's health.
SELECT aggregate_id, position, CAST(v[1] AS DOUBLE), v[2], v[3], CAST(v[4] AS INTEGER), CAST(v[5] AS INTEGER),
       coalesce(v[3], '-') || '/' || array_to_string(health, ',')
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
