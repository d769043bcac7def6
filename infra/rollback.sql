-- Emergency rollback of continuous monitoring (the brief's rollback plan, step 1 and 2).
--
-- Run against the production database with the service role (bypasses RLS):
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f infra/rollback.sql | tee rollback-$(date -u +%Y%m%dT%H%M%SZ).log
-- `cmon rollback --yes` runs the same statements (and prints counts). Keep this script's
-- log: the `returning` lists below are the traders and workflows to restore when
-- re-enabling gradually (runbook, "Re-enable").
--
-- Idempotent: a second run changes nothing. Nothing is deleted.

begin;

-- 0. Kill switch of the rollout: no new workflow is registered for anyone.
update public.rollout_settings
   set enabled = false, updated_at = now(), updated_by = 'rollback'
 where enabled;

-- 1. Immediately disable new workflow creation for Elite users.
update public.traders
   set auto_analyze_signals = false
 where auto_analyze_signals
   and user_id in (select id from public.user_profiles where subscription_tier = 'elite')
returning id as trader_id_disabled;

-- 2. Stop every active monitoring and position-management workflow.
update public.workflow_schedules
   set is_active = false, stopped_reason = 'rollback', stopped_at = now(), updated_at = now()
 where is_active
returning id as workflow_id_stopped, workflow_type;

commit;

-- 3. Investigate and fix the issue (runbook). 4. Re-enable gradually once fixed.
