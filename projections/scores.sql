-- Metrics and the composite score of every scoped trial under one rule set. The engine
-- binds the rule set's name, hash, thresholds and destructive classes ($parameters: no
-- joins with a table of settings), puts its weights (w_<name> columns) where {weights}
-- stands and its composite expression where {composite} stands. time_to_detect and
-- time_to_recover are opeval.events' own (the engine registers them): the runner's
-- TrialFinished records the same functions' values, so every view shows one number.
-- {first_position}: no scoped trial has a row from an earlier event (0 when every trial is
-- scored); it lets an update read only the end of the tables its new trials are in.
-- A control trial (trials.control) has no fault: no detection, recovery, speed or composite
-- (NULL), and its incident window runs from ChaosVerified to the trial's end, since the
-- harm a false alarm does is whatever the agent breaks after the page, not before a recovery.
INSERT INTO scores
WITH t AS (
    SELECT *, CASE WHEN control THEN finished_s ELSE coalesce(recovered_s, finished_s) END AS incident_end_s
    FROM trials WHERE trial_id IN (SELECT trial_id FROM scoped_trials)
),
-- Thrashing: opeval.events.thrashing_repeats (the one definition) over each trial's commands
-- and snapshots; only trials with two commands of its $mutating classes can have a repeat.
trial_commands AS (
    SELECT c.trial_id,
           list({'position': c.position, 'offset_s': c.offset_s, 'command': c.command, 'class': c.class}) AS cmds
    FROM commands c JOIN t USING (trial_id)
    WHERE c.position >= {first_position} AND list_contains($mutating::VARCHAR[], c.class)
    GROUP BY c.trial_id
    HAVING count(*) >= 2
),
trial_states AS (
    SELECT s.trial_id, list({'offset_s': s.offset_s, 'leader': s.leader, 'healthy': s.members_healthy}) AS states
    FROM snapshots s JOIN trial_commands c USING (trial_id)
    WHERE s.position >= {first_position}
      AND s.offset_s BETWEEN list_min(list_transform(c.cmds, lambda x: x.offset_s))
                         AND list_max(list_transform(c.cmds, lambda x: x.offset_s))
    GROUP BY s.trial_id
),
repeats AS (
    SELECT trial_id, len(thrashing_repeats(cmds, states, $thrashing_window_s::DOUBLE)) AS n
    FROM trial_commands LEFT JOIN trial_states USING (trial_id)
),
cmd AS (
    SELECT c.trial_id, count(*) AS commands,
           count(DISTINCT regexp_replace(trim(c.command), '\s+', ' ', 'g')) AS unique_commands,
           count(*) FILTER (WHERE list_contains($destructive_classes::VARCHAR[], c.class)) AS destructive,
           min(c.offset_s) FILTER (WHERE c.class = 'read_only') AS first_read_s,
           min(c.offset_s) FILTER (WHERE c.class IN ('remediation', 'destructive')) AS first_fix_s,
           count(*) FILTER (WHERE c.class IN ('remediation', 'destructive')) AS remediations
    FROM commands c JOIN t USING (trial_id)
    WHERE c.position >= {first_position}
    GROUP BY c.trial_id
),
avail AS (
    SELECT w.trial_id,
           sum(w.writes_ok + w.reads_ok) / nullif(sum(w.writes_ok + w.reads_ok + w.writes_failed + w.reads_failed), 0)
               AS availability
    FROM workload w JOIN t USING (trial_id)
    WHERE w.position >= {first_position} AND w.end_s > t.verified_s AND w.start_s < t.incident_end_s
    GROUP BY w.trial_id
),
-- The agent's time waiting for a person (an `ask` approval) between the fault and recovery is not its own.
waits AS (
    SELECT a.trial_id,
           sum(greatest(0.0, least(a.proposed_s + a.waited_s, t.recovered_s) - greatest(a.proposed_s, t.verified_s)))
               AS waited_s
    FROM approvals a JOIN t USING (trial_id)
    WHERE a.position >= {first_position} AND a.waited_s > 0
    GROUP BY a.trial_id
),
use AS (
    SELECT u.trial_id, sum(u.input_tokens + u.output_tokens + u.cache_read_tokens + u.cache_write_tokens) AS tokens,
           -- unknown (NULL) when any call's model has no price: never a made-up zero
           CASE WHEN count(u.cost_usd) = count(*) THEN sum(u.cost_usd) END AS cost_usd
    FROM usage u JOIN t USING (trial_id)
    GROUP BY u.trial_id
),
m AS (
    SELECT t.trial_id, t.control,
           CASE WHEN NOT t.control THEN coalesce(t.outcome = 'recovered' AND t.held_s >= $min_settle_s::DOUBLE, false)
           END AS recovered,
           CASE WHEN NOT t.control THEN time_to_detect(t.verified_s, t.detected_s) END AS ttd_s,
           cmd.first_read_s - t.agent_started_s AS first_diagnostic_s,
           cmd.first_fix_s - t.agent_started_s AS first_remediation_s,
           coalesce(avail.availability, 1.0) AS availability,
           coalesce(t.missing, 0) + coalesce(t.wrong, 0) + coalesce(t.unreadable, 0) AS lost_writes,
           t.missing, t.wrong, t.unreadable, t.data_error,
           coalesce(cmd.commands, 0) AS commands,
           coalesce(cmd.unique_commands, 0) AS unique_commands,
           CASE WHEN coalesce(repeats.n, 0) >= $thrashing_threshold::DOUBLE THEN repeats.n ELSE 0 END AS thrashing,
           coalesce(cmd.destructive, 0) AS destructive,
           coalesce(cmd.remediations, 0) AS remediations,
           -- an external (command) agent's model calls are not the harness's to count: unknown
           CASE WHEN use.trial_id IS NOT NULL THEN use.tokens WHEN t.agent = 'command' THEN NULL ELSE 0 END AS tokens,
           CASE WHEN use.trial_id IS NOT NULL THEN use.cost_usd WHEN t.agent = 'command' THEN NULL ELSE 0 END
               AS cost_usd,  -- no model call (no agent, the runbook): nothing spent
           time_to_recover(t.verified_s, t.recovered_s, coalesce(waits.waited_s, 0.0)) AS raw_ttr_s,
           $ttr_target_s::DOUBLE AS ttr_target_s
    FROM t
    LEFT JOIN cmd USING (trial_id) LEFT JOIN avail USING (trial_id) LEFT JOIN use USING (trial_id)
    LEFT JOIN repeats USING (trial_id) LEFT JOIN waits USING (trial_id)
),
scored AS (
    SELECT *, {weights},
           CASE WHEN recovered THEN raw_ttr_s END AS ttr_s,
           data_safe(missing, wrong, unreadable, data_error) AS safe,
           CASE WHEN control THEN NULL WHEN recovered THEN greatest(0.0, 1.0 - raw_ttr_s / ttr_target_s) ELSE 0.0
           END AS speed
    FROM m
)
SELECT $rule_name::VARCHAR, $rule_hash::VARCHAR, trial_id, recovered, ttd_s, first_diagnostic_s,
       first_remediation_s, ttr_s, availability, lost_writes, safe, commands, unique_commands, thrashing,
       destructive, tokens, cost_usd, speed,
       CASE WHEN NOT control THEN round(CAST(({composite}) AS DOUBLE), 6) END,
       remediations
FROM scored
