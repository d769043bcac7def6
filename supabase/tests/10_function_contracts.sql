-- The contract of every SQL function in `public`: its signature and result type, who
-- may execute it, and the behaviour the Python code relies on. Branches add functions:
-- add one row to `pg_temp.contract` (name, identity arguments, result) -- the privilege
-- checks then cover it -- and, for behaviour, a block at the end.
begin;
create schema if not exists extensions;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;
grant usage on schema extensions to anon, authenticated;  -- rolled back with the rest
select * from no_plan();

create table pg_temp.contract (name text, args text, result text, callers text[] default '{service_role}');
insert into pg_temp.contract (name, args, result, callers) values
    ('_insert_workflow', 'p_type text, p_signal_id uuid, p_position_id uuid, p_trader_id uuid, p_symbol text, p_check_gate boolean, p_max_reanalyses integer', 'jsonb', default),
    ('_ledger_call', 'p_trader_id uuid, p_workflow_id uuid, p_signal_id uuid, p_position_id uuid, p_candle_time timestamp with time zone, p_analysis_type text, p_outcome text, p_prompt_tokens integer, p_completion_tokens integer, p_total_tokens integer, p_latency_ms integer, p_model text, p_trace_id text', 'void', default),
    ('_open_position_from_plan', 'p_signal_id uuid, p_plan jsonb, p_price numeric', 'jsonb', default),
    ('_position_state', 'p positions', 'jsonb', default),
    ('_prompt_row', 'p_table regclass, p_row jsonb, p_columns text[]', 'json', default),
    ('_register_setup', 'p_signal_id uuid, p_max_reanalyses integer', 'jsonb', default),
    ('_rollout_counts', 'p_settings rollout_settings', 'jsonb', default),
    ('_rollout_write', 'p_changes jsonb, p_actor text', 'rollout_settings', default),
    ('_token_cap_refusal', 'p_user_id uuid, p_workflow_id uuid', 'jsonb', default),
    ('claim_candle', 'p_workflow_id uuid, p_candle_time timestamp with time zone, p_lease_seconds integer, p_stale_intervals integer', 'jsonb', default),
    ('claim_initial_analysis', 'p_signal_id uuid, p_lease_seconds integer', 'jsonb', default),
    ('cmon_now', '', 'timestamp with time zone', default),
    ('interval_seconds', 'p_interval text', 'integer', default),
    ('list_rollbacks', 'p_limit integer', 'jsonb', default),
    ('llm_ledger_summary', 'p_since timestamp with time zone', 'jsonb', default),
    ('monitoring_allowed', 'p_user_id uuid', 'boolean', default),
    ('position_job_context', 'p_workflow_id uuid, p_history integer', 'json', default),
    ('reconcile_workflows', 'p_max_reanalyses integer', 'jsonb', default),
    ('record_initial_analysis', 'p_signal_id uuid, p_decision text, p_confidence numeric, p_reasoning text, p_trade_plan jsonb, p_prompt_tokens integer, p_completion_tokens integer, p_total_tokens integer, p_latency_ms integer, p_model text, p_trace_id text, p_max_reanalyses integer', 'jsonb', default),
    ('record_initial_failure', 'p_signal_id uuid, p_error_kind text, p_message text, p_release_claim boolean, p_prompt_tokens integer, p_completion_tokens integer, p_total_tokens integer, p_latency_ms integer, p_model text, p_trace_id text', 'jsonb', default),
    ('record_management_decision', 'p_workflow_id uuid, p_candle_time timestamp with time zone, p_action text, p_params jsonb, p_verdict text, p_rejection_reason text, p_price numeric, p_expected_version integer, p_new_stop_loss numeric, p_new_take_profit numeric, p_reduce_fraction numeric, p_exit_price numeric, p_confidence numeric, p_reasoning text, p_prompt_tokens integer, p_completion_tokens integer, p_total_tokens integer, p_latency_ms integer, p_model text, p_trace_id text, p_source text', 'jsonb', default),
    ('record_setup_analysis', 'p_workflow_id uuid, p_candle_time timestamp with time zone, p_decision text, p_confidence numeric, p_reasoning text, p_trade_plan jsonb, p_prompt_tokens integer, p_completion_tokens integer, p_total_tokens integer, p_latency_ms integer, p_model text, p_trace_id text, p_price numeric', 'jsonb', default),
    ('record_workflow_failure', 'p_workflow_id uuid, p_candle_time timestamp with time zone, p_error_kind text, p_message text, p_max_errors integer, p_prompt_tokens integer, p_completion_tokens integer, p_total_tokens integer, p_latency_ms integer, p_model text, p_trace_id text', 'jsonb', default),
    ('register_position_management', 'p_position_id uuid, p_check_gate boolean', 'jsonb', default),
    ('register_setup_monitoring', 'p_analysis_id uuid, p_max_reanalyses integer', 'jsonb', default),
    ('resume_my_workflow', 'p_workflow_id uuid', 'jsonb', '{authenticated,service_role}'),
    ('resume_workflow', 'p_workflow_id uuid, p_actor text', 'jsonb', default),
    ('rollback_monitoring', 'p_actor text, p_reason text, p_tiers text[]', 'jsonb', default),
    ('rollout_admits', 'p_settings rollout_settings, p_user_id uuid, p_tier text', 'boolean', default),
    ('rollout_admitted_share', '', 'numeric', default),
    ('rollout_bucket', 'p_user_id uuid', 'integer', default),
    ('rollout_shadow', 'p_user_id uuid', 'boolean', default),
    ('rollout_shadow_admits', 'p_settings rollout_settings, p_user_id uuid, p_tier text', 'boolean', default),
    ('rollout_status', '', 'jsonb', default),
    ('rollout_update', 'p_changes jsonb, p_actor text, p_reason text, p_dry_run boolean', 'jsonb', default),
    ('setup_job_context', 'p_workflow_id uuid, p_signal_id uuid, p_history integer', 'json', default),
    ('signals_missing_initial_analysis', 'p_min_age_seconds integer, p_max_age_seconds integer, p_limit integer', 'SETOF uuid', default),
    ('stop_position_management', 'p_position_id uuid, p_reason text', 'jsonb', default),
    ('stop_workflow', 'p_workflow_id uuid, p_reason text', 'jsonb', default),
    ('undo_rollback', 'p_rollback_id uuid, p_actor text', 'jsonb', default),
    ('user_token_budget', 'p_user_id uuid', 'jsonb', default),
    ('user_token_cap', 'p_user_id uuid', 'bigint', default),
    ('valid_interval', 'p_interval text', 'boolean', default),
    ('workflows_for_candle', 'p_market text, p_symbol text, p_interval text, p_candle_time timestamp with time zone', 'TABLE(workflow_id uuid, workflow_type text)', default);

create view pg_temp.actual as
    select p.proname::text as name, pg_get_function_identity_arguments(p.oid) as args,
           pg_get_function_result(p.oid) as result, p.oid
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'public' and p.prokind = 'f' and pg_get_function_result(p.oid) <> 'trigger'
      and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e');

-- Exactly the listed functions exist, with these signatures and results: a function
-- added, dropped or changed without its row here fails.
select set_eq(
    $$ select name, args, result from pg_temp.actual $$,
    $$ select name, args, result from pg_temp.contract $$,
    'the public functions are exactly the contracted ones (signature and result type)'
);
-- Only the listed roles may execute any function of ours (PostgREST exposes public
-- functions as RPC: an RPC open to anon would bypass every invariant's caller check).
select is_empty(
    $$ select a.name || '(' || a.args || ') by ' || r.rolname
       from pg_temp.actual a
       cross join (values ('anon'), ('authenticated'), ('service_role')) as r (rolname)
       left join pg_temp.contract c on c.name = a.name and c.args = a.args
       where has_function_privilege(r.rolname, a.oid, 'EXECUTE')
             <> (r.rolname = any (coalesce(c.callers, '{service_role}'))) $$,
    'every public function is executable by its callers only (service_role unless listed)'
);

-- Behaviour the Python code relies on -------------------------------------------------
select ok(public.valid_interval('1m') and public.valid_interval('1h') and not public.valid_interval('7m'),
          'valid_interval: Binance intervals only');
select ok((select bool_and(public.rollout_bucket(gen_random_uuid()) between 0 and 99) from generate_series(1, 200)),
          'rollout_bucket is in 0..99');
select is(public.rollout_bucket('00000000-0000-4000-8000-000000000001'),
          public.rollout_bucket('00000000-0000-4000-8000-000000000001'), 'rollout_bucket is stable');

insert into public.user_profiles (id, subscription_tier) values ('00000000-0000-4000-8000-0000000000c0', 'elite');
insert into public.traders (id, user_id) values
    ('00000000-0000-4000-8000-0000000000c1', '00000000-0000-4000-8000-0000000000c0');
insert into public.positions (id, trader_id, symbol, side, entry_price, contracts, stop_loss, take_profit) values
    ('00000000-0000-4000-8000-0000000000c3', '00000000-0000-4000-8000-0000000000c1', 'ETHUSDT', 'long', 100, 1, 90, 120);
create table pg_temp.reg as
    select public.register_position_management('00000000-0000-4000-8000-0000000000c3', false) as first,
           public.register_position_management('00000000-0000-4000-8000-0000000000c3', false) as second;
select is((select first ->> 'workflow_id' from pg_temp.reg), (select second ->> 'workflow_id' from pg_temp.reg),
          'register_position_management is idempotent: the same workflow twice');
select is((select count(*) from public.workflow_schedules
           where position_id = '00000000-0000-4000-8000-0000000000c3'), 1::bigint,
          'register_position_management: one workflow per position');
create table pg_temp.claims as
    select public.claim_candle((select (first ->> 'workflow_id')::uuid from pg_temp.reg),
                               '2026-01-01 00:01:00+00', 300) as c1;
insert into pg_temp.claims
    select public.claim_candle((select (first ->> 'workflow_id')::uuid from pg_temp.reg),
                               '2026-01-01 00:01:00+00', 300);
select results_eq(
    $$ select (c1 ->> 'claimed')::boolean from pg_temp.claims $$,
    $$ values (true), (false) $$,
    'claim_candle: the same candle is claimed once'
);
select is((select stop_workflow((select (first ->> 'workflow_id')::uuid from pg_temp.reg), 'test') ->> 'action'),
          'stopped', 'stop_workflow stops an active workflow');
select is((select stop_workflow((select (first ->> 'workflow_id')::uuid from pg_temp.reg), 'test') ->> 'action'),
          'already_stopped', 'stop_workflow is idempotent');
select is((select count(*) from public.workflow_schedules where is_active
           and position_id = '00000000-0000-4000-8000-0000000000c3'), 0::bigint,
          'a stopped workflow is inactive');

-- A job's prompt context: one call, numbers as their decimal text, the columns in table order.
select is((select json_typeof(public.position_job_context((select (first ->> 'workflow_id')::uuid from pg_temp.reg))
                              -> 'position' -> 'entry_price')), 'string',
          'position_job_context: a numeric is its decimal text, not a JSON number');
select is((select (select string_agg(k, ',') from json_object_keys(
                      public.position_job_context((select (first ->> 'workflow_id')::uuid from pg_temp.reg))
                      -> 'position') k) like 'id,trader_id,signal_id,symbol,side,entry_price,%'),
          true, 'position_job_context: the position''s columns in table order');
select throws_ok($$ select public.setup_job_context(p_workflow_id => gen_random_uuid()) $$, 'P0002', NULL,
                 'setup_job_context: an unknown workflow is not found');

-- The shadow cohort: the next buckets after the live ones, never a live user.
update public.rollout_settings set percent = 0, shadow_percent = 100, tiers = null where id;
select ok(public.rollout_shadow('00000000-0000-4000-8000-0000000000c0')
          and public.monitoring_allowed('00000000-0000-4000-8000-0000000000c0'),
          'rollout_shadow: a shadow user is monitored');
update public.rollout_settings set percent = 100, shadow_percent = 100 where id;
select ok(not public.rollout_shadow('00000000-0000-4000-8000-0000000000c0'),
          'rollout_shadow: a live user is never shadow');

select * from finish();
rollback;
