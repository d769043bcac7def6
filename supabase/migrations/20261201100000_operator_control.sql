-- Operator actions are data: rollback, undo, resume and gate changes are SQL functions
-- that record exactly what they changed (who, when, why, the rows touched), so every
-- step of a rollout can be undone and audited. The CLI and the admin API only call them.

-- Audit trail -------------------------------------------------------------------------

create table if not exists public.operator_actions (
    id           uuid primary key default gen_random_uuid(),
    created_at   timestamptz not null default now(),
    actor        text not null,
    -- rollout_update | rollback | rollback_undo | resume_workflow
    action       text not null,
    reason       text,
    -- The rollback, workflow ... the action was about (null for a gate change).
    subject_id   uuid,
    before_state jsonb,
    after_state  jsonb,
    rows_touched integer not null default 0 check (rows_touched >= 0)
);
create index if not exists operator_actions_created_idx on public.operator_actions (created_at desc);

-- What each rollback changed, so that its undo restores exactly that and nothing else.
create table if not exists public.rollbacks (
    id            uuid primary key default gen_random_uuid(),
    created_at    timestamptz not null default now(),
    actor         text not null,
    reason        text,
    tiers         text[] not null,
    trader_ids    uuid[] not null default '{}',
    workflow_ids  uuid[] not null default '{}',
    previous_gate jsonb not null,
    undone_at     timestamptz,
    undone_by     text,
    undo_result   jsonb,
    constraint rollback_undo_complete check ((undone_at is null) = (undone_by is null))
);

alter table public.operator_actions enable row level security;
alter table public.rollbacks enable row level security;
-- No policy: only the service role (which bypasses RLS) sees them.
revoke all on public.operator_actions, public.rollbacks from anon, authenticated;
grant all on public.operator_actions, public.rollbacks to service_role;

-- Rollout gate ----------------------------------------------------------------------------

-- Is this user admitted by these gate settings? The one predicate behind
-- monitoring_allowed (the live row) and the admitted counts (a previewed row).
-- Every comparison fails closed: a NULL anywhere keeps the user out.
create or replace function public.rollout_admits(p_settings public.rollout_settings, p_user_id uuid,
                                                 p_tier text)
returns boolean
language sql immutable
set search_path = ''
as $$
    select coalesce(
        p_settings.enabled
        and not coalesce(p_user_id = any (p_settings.deny_user_ids), true)
        and (
            coalesce(p_user_id = any (p_settings.allow_user_ids), false)
            or (
                (p_settings.tiers is null or coalesce(p_tier = any (p_settings.tiers), false))
                and public.rollout_bucket(p_user_id) < p_settings.percent
            )
        ), false)
$$;

create or replace function public.monitoring_allowed(p_user_id uuid)
returns boolean
language sql stable
set search_path = ''
as $$
    -- Everyone is allowed only when no settings row exists at all.
    select coalesce((
        select public.rollout_admits(r, p_user_id,
                                     (select u.subscription_tier from public.user_profiles u
                                       where u.id = p_user_id))
          from public.rollout_settings r where r.id
    ), true)
$$;

-- How many users and traders these settings admit (what the gate means right now).
create or replace function public._rollout_counts(p_settings public.rollout_settings)
returns jsonb
language sql stable
set search_path = ''
as $$
    select jsonb_build_object(
        'users_total', (select count(*) from public.user_profiles),
        'users_admitted', (select count(*) from public.user_profiles u
                            where public.rollout_admits(p_settings, u.id, u.subscription_tier)),
        'traders_total', (select count(*) from public.traders),
        'traders_admitted', (select count(*) from public.traders t
                               join public.user_profiles u on u.id = t.user_id
                              where public.rollout_admits(p_settings, u.id, u.subscription_tier)),
        'traders_auto_analyze_admitted', (select count(*) from public.traders t
                               join public.user_profiles u on u.id = t.user_id
                              where t.auto_analyze_signals
                                and public.rollout_admits(p_settings, u.id, u.subscription_tier)))
$$;

-- The gate as it is, with the counts it admits.
create or replace function public.rollout_status()
returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
    v_row public.rollout_settings%rowtype;
begin
    select * into v_row from public.rollout_settings where id;
    if not found then
        raise exception 'no rollout_settings row' using errcode = 'P0002';
    end if;
    return jsonb_build_object('settings', to_jsonb(v_row)) || public._rollout_counts(v_row);
end
$$;

-- Overwrite the gate row's columns with the given keys (internal: callers validated them).
-- Generic over the row type, so columns added later by other migrations are settable.
create or replace function public._rollout_write(p_changes jsonb, p_actor text)
returns public.rollout_settings
language plpgsql
set search_path = ''
as $$
declare
    v_cols text;
    v_row  public.rollout_settings%rowtype;
begin
    select string_agg(quote_ident(a.attname), ', ' order by a.attnum) into v_cols
      from pg_attribute a
     where a.attrelid = 'public.rollout_settings'::regclass and a.attnum > 0 and not a.attisdropped
       and a.attname <> 'id';
    execute format(
        'update public.rollout_settings r set (%1$s) = (select %1$s from jsonb_populate_record(r, $1))'
        ' where r.id returning *', v_cols)
       into v_row
      using p_changes || jsonb_build_object('updated_at', now(), 'updated_by', p_actor);
    return v_row;
end
$$;

-- Change the gate: apply the given keys of p_changes to the single rollout_settings row
-- (unknown keys are refused), record before/after in operator_actions, and answer with
-- how many users and traders the new gate admits. With p_dry_run nothing is written.
create or replace function public.rollout_update(p_changes jsonb, p_actor text, p_reason text default null,
                                                 p_dry_run boolean default false)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_before  public.rollout_settings%rowtype;
    v_after   public.rollout_settings%rowtype;
    v_unknown text;
    v_action  uuid;
begin
    if p_changes is null or jsonb_typeof(p_changes) <> 'object' then
        raise exception 'rollout changes must be a JSON object' using errcode = '22023';
    end if;
    if coalesce(p_actor, '') = '' then
        raise exception 'an operator action needs an actor' using errcode = '22023';
    end if;
    select string_agg(k, ', ' order by k) into v_unknown
      from jsonb_object_keys(p_changes) k
     where k in ('id', 'updated_at', 'updated_by')
        or not exists (select 1 from pg_attribute a
                        where a.attrelid = 'public.rollout_settings'::regclass and a.attnum > 0
                          and not a.attisdropped and a.attname = k);
    if v_unknown is not null then
        raise exception 'not a rollout setting: %', v_unknown using errcode = '22023';
    end if;

    select * into v_before from public.rollout_settings where id for update;
    if not found then
        raise exception 'no rollout_settings row' using errcode = 'P0002';
    end if;
    if p_dry_run then
        -- The row as it would be, never written: the counts are computed on this value.
        v_after := jsonb_populate_record(v_before, p_changes);
        return jsonb_build_object('dry_run', true, 'before', to_jsonb(v_before), 'after', to_jsonb(v_after),
                                  'changed', (select coalesce(jsonb_agg(k order by k), '[]')
                                                from jsonb_object_keys(p_changes) k
                                               where to_jsonb(v_before) -> k
                                                     is distinct from to_jsonb(v_after) -> k))
               || public._rollout_counts(v_after);
    end if;

    v_after := public._rollout_write(p_changes, p_actor);
    insert into public.operator_actions (actor, action, reason, before_state, after_state, rows_touched)
    values (p_actor, 'rollout_update', p_reason, to_jsonb(v_before), to_jsonb(v_after), 1)
    returning id into v_action;
    return jsonb_build_object('dry_run', false, 'operator_action_id', v_action,
                              'before', to_jsonb(v_before), 'after', to_jsonb(v_after),
                              'changed', (select coalesce(jsonb_agg(k order by k), '[]')
                                            from jsonb_object_keys(p_changes) k
                                           where to_jsonb(v_before) -> k is distinct from to_jsonb(v_after) -> k))
           || public._rollout_counts(v_after);
end
$$;

-- Rollback and undo -------------------------------------------------------------------------

-- The brief's emergency rollback in one transaction: close the gate, turn off
-- auto_analyze_signals for the given tiers' traders, stop every active workflow
-- (stopped_reason 'rollback'), and record exactly which rows it changed.
create or replace function public.rollback_monitoring(p_actor text, p_reason text default null,
                                                      p_tiers text[] default array['elite'])
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_gate      public.rollout_settings%rowtype;
    v_traders   uuid[];
    v_workflows uuid[];
    v_id        uuid;
begin
    if coalesce(p_actor, '') = '' then
        raise exception 'an operator action needs an actor' using errcode = '22023';
    end if;
    select * into v_gate from public.rollout_settings where id for update;
    if not found then
        raise exception 'no rollout_settings row' using errcode = 'P0002';
    end if;

    with changed as (
        update public.traders set auto_analyze_signals = false
         where auto_analyze_signals
           and user_id in (select id from public.user_profiles
                            where subscription_tier = any (coalesce(p_tiers, array['elite'])))
        returning id)
    select coalesce(array_agg(id order by id), '{}') into v_traders from changed;

    with stopped as (
        update public.workflow_schedules
           set is_active = false, stopped_reason = 'rollback', stopped_at = now(), updated_at = now()
         where is_active
        returning id)
    select coalesce(array_agg(id order by id), '{}') into v_workflows from stopped;

    update public.rollout_settings set enabled = false, updated_at = now(), updated_by = p_actor where id;

    insert into public.rollbacks (actor, reason, tiers, trader_ids, workflow_ids, previous_gate)
    values (p_actor, p_reason, coalesce(p_tiers, array['elite']), v_traders, v_workflows, to_jsonb(v_gate))
    returning id into v_id;
    insert into public.operator_actions (actor, action, reason, subject_id, before_state, after_state,
                                         rows_touched)
    values (p_actor, 'rollback', p_reason, v_id, jsonb_build_object('gate', to_jsonb(v_gate)),
            jsonb_build_object('gate_enabled', false, 'trader_ids', to_jsonb(v_traders),
                               'workflow_ids', to_jsonb(v_workflows)),
            1 + cardinality(v_traders) + cardinality(v_workflows));

    return jsonb_build_object('rollback_id', v_id, 'traders_disabled', cardinality(v_traders),
                              'workflows_stopped', cardinality(v_workflows), 'rollout_enabled', false,
                              'previous_gate', to_jsonb(v_gate));
end
$$;

-- Undo one rollback in one transaction: the same traders' auto_analyze_signals back on,
-- the same workflows active again where their signal or position is still open (each
-- other one listed with why), the gate row as it was before the rollback. A second undo
-- changes nothing and says so.
create or replace function public.undo_rollback(p_rollback_id uuid, p_actor text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_rb        public.rollbacks%rowtype;
    v_gate      public.rollout_settings%rowtype;
    v_after     public.rollout_settings%rowtype;
    v_wf        record;
    v_traders   uuid[];
    v_restored  jsonb := '[]';
    v_skipped   jsonb := '[]';
    v_why       text;
    v_result    jsonb;
begin
    if coalesce(p_actor, '') = '' then
        raise exception 'an operator action needs an actor' using errcode = '22023';
    end if;
    select * into v_rb from public.rollbacks where id = p_rollback_id for update;
    if not found then
        raise exception 'rollback % not found', p_rollback_id using errcode = 'P0002';
    end if;
    if v_rb.undone_at is not null then
        return jsonb_build_object('action', 'already_undone', 'rollback_id', v_rb.id,
                                  'undone_at', v_rb.undone_at, 'undone_by', v_rb.undone_by,
                                  'traders_enabled', 0, 'workflows_restored', 0, 'gate_restored', false);
    end if;

    with changed as (
        update public.traders set auto_analyze_signals = true
         where id = any (v_rb.trader_ids) and not auto_analyze_signals
        returning id)
    select coalesce(array_agg(id order by id), '{}') into v_traders from changed;

    perform 1 from public.workflow_schedules where id = any (v_rb.workflow_ids) order by id for update;
    for v_wf in
        select ids.id, w.id as found_id, w.workflow_type, w.is_active, w.stopped_reason,
               s.status as signal_status, p.status as position_status
          from unnest(v_rb.workflow_ids) as ids (id)
          left join public.workflow_schedules w on w.id = ids.id
          left join public.signals s on s.id = w.signal_id and w.workflow_type = 'setup_monitoring'
          left join public.positions p on p.id = w.position_id and w.workflow_type = 'position_management'
         order by ids.id
    loop
        v_why := case
            when v_wf.found_id is null then 'workflow_gone'
            when v_wf.is_active then 'already_active'
            when v_wf.stopped_reason is distinct from 'rollback' then 'stopped_since:' || v_wf.stopped_reason
            when v_wf.workflow_type = 'setup_monitoring' and v_wf.signal_status is null then 'signal_gone'
            when v_wf.workflow_type = 'setup_monitoring' and v_wf.signal_status not in ('new', 'monitoring')
                then 'signal_' || v_wf.signal_status
            when v_wf.workflow_type = 'position_management' and v_wf.position_status is null
                then 'position_gone'
            when v_wf.workflow_type = 'position_management' and v_wf.position_status <> 'open'
                then 'position_' || v_wf.position_status
        end;
        if v_why is null then
            update public.workflow_schedules
               set is_active = true, stopped_reason = null, stopped_at = null, updated_at = now()
             where id = v_wf.id;
            v_restored := v_restored || jsonb_build_array(v_wf.id);
        else
            v_skipped := v_skipped || jsonb_build_array(jsonb_build_object('workflow_id', v_wf.id,
                                                                           'reason', v_why));
        end if;
    end loop;

    select * into v_gate from public.rollout_settings where id for update;
    v_after := public._rollout_write(v_rb.previous_gate - 'id' - 'updated_at' - 'updated_by', p_actor);

    v_result := jsonb_build_object(
        'action', 'undone', 'rollback_id', v_rb.id,
        'traders_enabled', cardinality(v_traders), 'trader_ids', to_jsonb(v_traders),
        'workflows_restored', jsonb_array_length(v_restored), 'restored_workflow_ids', v_restored,
        'workflows_not_restored', v_skipped,
        'gate_restored', true, 'gate_before', to_jsonb(v_gate), 'gate_after', to_jsonb(v_after));
    update public.rollbacks set undone_at = now(), undone_by = p_actor, undo_result = v_result
     where id = v_rb.id;
    insert into public.operator_actions (actor, action, subject_id, before_state, after_state, rows_touched)
    values (p_actor, 'rollback_undo', v_rb.id, jsonb_build_object('gate', to_jsonb(v_gate)),
            v_result - 'gate_before', 1 + cardinality(v_traders) + jsonb_array_length(v_restored));
    return v_result;
end
$$;

-- Past rollbacks, newest first.
create or replace function public.list_rollbacks(p_limit integer default 50)
returns jsonb
language sql stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(x order by x.created_at desc, x.id), '[]')
      from (select r.id, r.created_at, r.actor, r.reason, r.tiers,
                   cardinality(r.trader_ids) as traders_disabled,
                   cardinality(r.workflow_ids) as workflows_stopped,
                   r.undone_at is not null as undone, r.undone_at, r.undone_by,
                   r.undo_result -> 'workflows_restored' as workflows_restored
              from public.rollbacks r
             order by r.created_at desc, r.id
             limit greatest(coalesce(p_limit, 50), 1)) x
$$;

-- Resume -------------------------------------------------------------------------------------

-- Resume one stopped or auto-disabled workflow whose signal or position is still open:
-- active again, error counter reset, stop reason cleared; the next candle is claimed as
-- usual. Refused (with why) when the entity is finished.
create or replace function public.resume_workflow(p_workflow_id uuid, p_actor text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_wf     public.workflow_schedules%rowtype;
    v_status text;
    v_why    text;
begin
    if coalesce(p_actor, '') = '' then
        raise exception 'an operator action needs an actor' using errcode = '22023';
    end if;
    select * into v_wf from public.workflow_schedules where id = p_workflow_id for update;
    if not found then
        raise exception 'workflow % not found', p_workflow_id using errcode = 'P0002';
    end if;
    if v_wf.is_active then
        return jsonb_build_object('action', 'already_active', 'workflow_id', v_wf.id);
    end if;
    if v_wf.workflow_type = 'setup_monitoring' then
        select status into v_status from public.signals where id = v_wf.signal_id;
        if v_status is null or v_status not in ('new', 'monitoring') then
            v_why := 'signal_' || coalesce(v_status, 'gone');
        end if;
    else
        select status into v_status from public.positions where id = v_wf.position_id;
        if v_status is distinct from 'open' then
            v_why := 'position_' || coalesce(v_status, 'gone');
        end if;
    end if;
    if v_why is not null then
        return jsonb_build_object('action', 'refused', 'workflow_id', v_wf.id, 'reason', v_why);
    end if;

    update public.workflow_schedules
       set is_active = true, consecutive_errors = 0, stopped_reason = null, stopped_at = null,
           updated_at = now()
     where id = v_wf.id;
    insert into public.operator_actions (actor, action, subject_id, before_state, after_state, rows_touched)
    values (p_actor, 'resume_workflow', v_wf.id,
            jsonb_build_object('is_active', false, 'stopped_reason', v_wf.stopped_reason,
                               'consecutive_errors', v_wf.consecutive_errors),
            jsonb_build_object('is_active', true, 'stopped_reason', null, 'consecutive_errors', 0), 1);
    return jsonb_build_object('action', 'resumed', 'workflow_id', v_wf.id,
                              'workflow_type', v_wf.workflow_type, 'symbol', v_wf.symbol,
                              'interval', v_wf.interval, 'previous_reason', v_wf.stopped_reason);
end
$$;

-- The same for the signed-in owner, over PostgREST RPC: only a workflow of one of
-- auth.uid()'s traders (anyone else's looks like a workflow that does not exist), and only
-- while the rollout admits the user (a user cannot undo an operator's rollback).
create or replace function public.resume_my_workflow(p_workflow_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := auth.uid();
begin
    if v_uid is null then
        raise exception 'not signed in' using errcode = '42501';
    end if;
    if not exists (select 1 from public.workflow_schedules w join public.traders t on t.id = w.trader_id
                    where w.id = p_workflow_id and t.user_id = v_uid) then
        raise exception 'workflow % not found', p_workflow_id using errcode = 'P0002';
    end if;
    if not public.monitoring_allowed(v_uid) then
        return jsonb_build_object('action', 'refused', 'workflow_id', p_workflow_id, 'reason', 'rollout_gate');
    end if;
    return public.resume_workflow(p_workflow_id, 'user:' || v_uid::text);
end
$$;

-- Registration answers already_stopped for a stopped workflow -----------------------------------

create or replace function public._register_setup(p_signal_id uuid, p_max_reanalyses integer)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_signal   public.signals%rowtype;
    v_existing public.workflow_schedules%rowtype;
    v_result   jsonb;
begin
    select * into v_existing from public.workflow_schedules
     where signal_id = p_signal_id and workflow_type = 'setup_monitoring';
    if found then
        if not v_existing.is_active then
            -- Stopped (rollback, auto-disable, an operator): registering again would not
            -- start it; say so, with why. Resume it with resume_workflow.
            return jsonb_build_object('action', 'already_stopped', 'workflow_id', v_existing.id,
                                      'is_active', false, 'reason', v_existing.stopped_reason);
        end if;
        return jsonb_build_object('action', 'already_registered', 'workflow_id', v_existing.id,
                                  'is_active', true);
    end if;
    select * into v_signal from public.signals where id = p_signal_id;
    if not found then
        return jsonb_build_object('action', 'ignored', 'reason', 'signal_not_found');
    end if;
    if v_signal.status not in ('new', 'monitoring') then
        return jsonb_build_object('action', 'ignored', 'reason', 'signal_' || v_signal.status);
    end if;
    v_result := public._insert_workflow('setup_monitoring', p_signal_id, null, v_signal.trader_id,
                                        v_signal.symbol, true, p_max_reanalyses);
    if v_result ->> 'action' = 'registered' then
        update public.signals set status = 'monitoring', updated_at = now()
         where id = p_signal_id and status = 'new';
    end if;
    return v_result;
end
$$;

create or replace function public.register_position_management(p_position_id uuid, p_check_gate boolean default true)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_position public.positions%rowtype;
    v_existing public.workflow_schedules%rowtype;
begin
    select * into v_existing from public.workflow_schedules
     where position_id = p_position_id and workflow_type = 'position_management';
    if found then
        if not v_existing.is_active then
            return jsonb_build_object('action', 'already_stopped', 'workflow_id', v_existing.id,
                                      'is_active', false, 'reason', v_existing.stopped_reason);
        end if;
        return jsonb_build_object('action', 'already_registered', 'workflow_id', v_existing.id,
                                  'is_active', true);
    end if;
    select * into v_position from public.positions where id = p_position_id;
    if not found then
        return jsonb_build_object('action', 'ignored', 'reason', 'position_not_found');
    end if;
    if v_position.status <> 'open' then
        return jsonb_build_object('action', 'ignored', 'reason', 'position_' || v_position.status);
    end if;
    return public._insert_workflow('position_management', null, p_position_id, v_position.trader_id,
                                   v_position.symbol, p_check_gate, null);
end
$$;

-- Grants: the service role calls everything; the signed-in owner only resume_my_workflow.
do $$
declare
    v_fn record;
begin
    for v_fn in
        select p.oid::regprocedure as sig
          from pg_proc p join pg_namespace n on n.oid = p.pronamespace
         where n.nspname = 'public'
           and p.proname in ('rollout_admits', 'monitoring_allowed', '_rollout_counts', 'rollout_status',
                             '_rollout_write', 'rollout_update', 'rollback_monitoring', 'undo_rollback',
                             'list_rollbacks', 'resume_workflow', 'resume_my_workflow', '_register_setup',
                             'register_position_management')
    loop
        execute format('revoke all on function %s from public, anon, authenticated', v_fn.sig);
        execute format('grant execute on function %s to service_role', v_fn.sig);
    end loop;
end
$$;
grant execute on function public.resume_my_workflow(uuid) to authenticated;
