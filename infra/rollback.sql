-- Emergency rollback of continuous monitoring (the brief's rollback plan, steps 1 and 2).
--
-- Plain SQL for the Supabase SQL editor or psql, with the service role (bypasses RLS):
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f infra/rollback.sql
-- It calls the very function `cmon rollback --yes` calls, public.rollback_monitoring, which
-- in ONE transaction:
--   0. closes the rollout gate (rollout_settings.enabled = false): nothing new is registered;
--   1. turns off auto_analyze_signals for every Elite trader that had it on;
--   2. stops every active workflow (stopped_reason = 'rollback');
-- and records exactly which traders and workflows it changed and the gate row before it,
-- in public.rollbacks. The answer carries the rollback_id. Nothing is deleted.
--
-- Undo it exactly (same traders back on, same workflows active again where their signal or
-- position is still open, the gate as it was):
--   cmon rollback undo <rollback_id> --yes
--   -- or: select public.undo_rollback(p_rollback_id => '<rollback_id>', p_actor => 'sql:oncall');
-- Past rollbacks: cmon rollback list  (or: select public.list_rollbacks();)
--
-- Running it twice is safe: the second run finds nothing active and records an empty rollback.

select public.rollback_monitoring(
    p_actor  => 'sql:' || current_user,
    p_reason => 'infra/rollback.sql',
    p_tiers  => array['elite']
) as rollback;
