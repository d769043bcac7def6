-- The shadow cohort: users monitored and analysed for real, whose analyses and decisions
-- are recorded (marked shadow) and never applied. Shadow is a flag on the apply step:
-- the pipeline is the same; the record functions record and, for a shadow workflow,
-- change no signal and open, change or close no position. The brief's canary can then
-- start with no user-visible effect and be compared with the live cohort.

-- Schema ------------------------------------------------------------------------------------

alter table public.rollout_settings
    add column if not exists shadow_percent integer not null default 0
        check (shadow_percent between 0 and 100);
-- Fixed at registration (from the trader's user, by the trigger below): a workflow keeps
-- its cohort for its life, so one signal is never half shadow, half live.
alter table public.workflow_schedules add column if not exists shadow boolean not null default false;
alter table public.signal_analyses add column if not exists shadow boolean not null default false;
alter table public.management_decisions add column if not exists shadow boolean not null default false;
-- So that the cost of the shadow cohort is split from the live one.
alter table public.llm_calls add column if not exists shadow boolean not null default false;

-- Who is shadow -----------------------------------------------------------------------------

-- The one predicate of the shadow cohort: the next buckets after the live ones, among the
-- users the gate would otherwise consider (enabled, not denied, tier filter passes), and
-- never a user admitted live. Raising `percent` moves shadow users into live; no one is
-- dropped. Every comparison fails closed.
create or replace function public.rollout_shadow_admits(p_settings public.rollout_settings, p_user_id uuid,
                                                        p_tier text)
returns boolean
language sql immutable
set search_path = ''
as $$
    select coalesce(
        p_settings.enabled
        and not coalesce(p_user_id = any (p_settings.deny_user_ids), true)
        and (p_settings.tiers is null or coalesce(p_tier = any (p_settings.tiers), false))
        and not public.rollout_admits(p_settings, p_user_id, p_tier)
        and public.rollout_bucket(p_user_id) < p_settings.percent + p_settings.shadow_percent,
        false)
$$;

-- Is this user in the shadow cohort of the live gate row? (No row: nobody is.)
create or replace function public.rollout_shadow(p_user_id uuid)
returns boolean
language sql stable
set search_path = ''
as $$
    select coalesce((
        select public.rollout_shadow_admits(r, p_user_id,
                                            (select u.subscription_tier from public.user_profiles u
                                              where u.id = p_user_id))
          from public.rollout_settings r where r.id
    ), false)
$$;

-- Monitored: admitted live or in the shadow cohort (registration admits both; the
-- workflow's shadow flag says which).
create or replace function public.monitoring_allowed(p_user_id uuid)
returns boolean
language sql stable
set search_path = ''
as $$
    -- Everyone is allowed only when no settings row exists at all.
    select coalesce((
        select public.rollout_admits(r, p_user_id, t.tier) or public.rollout_shadow_admits(r, p_user_id, t.tier)
          from public.rollout_settings r
         cross join lateral (select (select u.subscription_tier from public.user_profiles u
                                      where u.id = p_user_id) as tier) t
         where r.id
    ), true)
$$;

-- How many users and traders these settings admit live, and how many are shadow.
create or replace function public._rollout_counts(p_settings public.rollout_settings)
returns jsonb
language sql stable
set search_path = ''
as $$
    select jsonb_build_object(
        'users_total', (select count(*) from public.user_profiles),
        'users_admitted', (select count(*) from public.user_profiles u
                            where public.rollout_admits(p_settings, u.id, u.subscription_tier)),
        'users_shadow', (select count(*) from public.user_profiles u
                          where public.rollout_shadow_admits(p_settings, u.id, u.subscription_tier)),
        'traders_total', (select count(*) from public.traders),
        'traders_admitted', (select count(*) from public.traders t
                               join public.user_profiles u on u.id = t.user_id
                              where public.rollout_admits(p_settings, u.id, u.subscription_tier)),
        'traders_shadow', (select count(*) from public.traders t
                             join public.user_profiles u on u.id = t.user_id
                            where public.rollout_shadow_admits(p_settings, u.id, u.subscription_tier)),
        'traders_auto_analyze_admitted', (select count(*) from public.traders t
                               join public.user_profiles u on u.id = t.user_id
                              where t.auto_analyze_signals
                                and public.rollout_admits(p_settings, u.id, u.subscription_tier)))
$$;

-- Registration marks a workflow shadow when its trader's user is in the shadow cohort.
-- A trigger, so that every path that inserts a workflow (webhooks, reconciler, analyses)
-- marks it the same way.
create or replace function public._workflow_shadow_at_registration()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    new.shadow := new.shadow or coalesce((select public.rollout_shadow(t.user_id)
                                            from public.traders t where t.id = new.trader_id), false);
    return new;
end
$$;
drop trigger if exists workflow_schedules_shadow on public.workflow_schedules;
create trigger workflow_schedules_shadow before insert on public.workflow_schedules
    for each row execute function public._workflow_shadow_at_registration();

-- The ledger row of a call carries its workflow's cohort (for a signal's initial analysis,
-- which has no workflow, the user's cohort now), so shadow tokens are counted apart.
create or replace function public._llm_call_shadow()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    new.shadow := new.shadow or coalesce(
        case when new.workflow_id is not null
             then (select w.shadow from public.workflow_schedules w where w.id = new.workflow_id)
             else public.rollout_shadow(new.user_id) end, false);
    return new;
end
$$;
drop trigger if exists llm_calls_shadow on public.llm_calls;
create trigger llm_calls_shadow before insert on public.llm_calls
    for each row execute function public._llm_call_shadow();

-- Registration: a shadow workflow leaves its signal `new` ------------------------------------

create or replace function public._register_setup(p_signal_id uuid, p_max_reanalyses integer)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_signal   public.signals%rowtype;
    v_existing public.workflow_schedules%rowtype;
    v_result   jsonb;
    v_shadow   boolean;
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
        select w.shadow into v_shadow from public.workflow_schedules w
         where w.id = (v_result ->> 'workflow_id')::uuid;
        if v_shadow then
            v_result := v_result || jsonb_build_object('shadow', true);
        else
            update public.signals set status = 'monitoring', updated_at = now()
             where id = p_signal_id and status = 'new';
        end if;
    end if;
    return v_result;
end
$$;

-- The apply step ----------------------------------------------------------------------------

-- Only a live decision opens a position, and the position it opens is live (its
-- management workflow is not shadow even if the user has since moved to the shadow cohort).
create or replace function public._open_position_from_plan(p_signal_id uuid, p_plan jsonb, p_price numeric)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_signal   public.signals%rowtype;
    v_position uuid;
    v_entry    numeric;
    v_side     text;
    v_sl       numeric;
    v_tp       numeric;
    v_reg      jsonb;
    v_now      timestamptz := public.cmon_now();
begin
    select * into v_signal from public.signals where id = p_signal_id;
    v_entry := coalesce(nullif(p_plan ->> 'entry', '')::numeric, p_price);
    v_side := coalesce(p_plan ->> 'side', 'long');
    v_sl := nullif(p_plan ->> 'stop_loss', '')::numeric;
    v_tp := nullif(p_plan ->> 'take_profit', '')::numeric;
    if v_entry is null then
        raise exception 'enter_trade for signal % has no entry price', p_signal_id
            using errcode = '22023';
    end if;
    -- A long's stop below its entry and target above (mirrored for a short): a plan
    -- that inverts them would book invented profit or be stuck with an unfixable stop.
    if (v_side = 'long' and (v_sl >= v_entry or v_tp <= v_entry))
       or (v_side = 'short' and (v_sl <= v_entry or v_tp >= v_entry)) then
        raise exception 'trade plan for signal % does not bracket its entry %', p_signal_id, v_entry
            using errcode = '22023';
    end if;
    insert into public.positions
        (trader_id, signal_id, symbol, side, entry_price, contracts, initial_contracts, stop_loss,
         take_profit, opened_at, updated_at)
    values (v_signal.trader_id, p_signal_id, v_signal.symbol, v_side, v_entry,
            coalesce(nullif(p_plan ->> 'contracts', '')::numeric, 1),
            coalesce(nullif(p_plan ->> 'contracts', '')::numeric, 1),
            v_sl, v_tp, v_now, v_now)
    on conflict (signal_id) where signal_id is not null do nothing
    returning id into v_position;
    if v_position is null then
        select id into v_position from public.positions where signal_id = p_signal_id;
    end if;
    update public.signals set status = 'entered', updated_at = v_now
     where id = p_signal_id and status in ('new', 'monitoring');
    v_reg := public.register_position_management(v_position, false);
    if v_reg ->> 'action' = 'registered' then
        update public.workflow_schedules set shadow = false
         where id = (v_reg ->> 'workflow_id')::uuid and shadow;
    end if;
    return jsonb_build_object('position_id', v_position, 'position_workflow_id', v_reg -> 'workflow_id');
end
$$;

-- Record a monitoring analysis for (workflow, candle) and apply its decision:
--   wait        -> count it; at max_reanalyses stop and expire the signal;
--   enter_trade -> stop, mark the signal entered, open the position, register its management;
--   bad_setup   -> stop and expire the signal.
-- A shadow workflow's analysis is recorded (shadow = true) and its own bookkeeping kept
-- (count, candle, errors, stopped when its decision would end it), and nothing else is
-- applied: the outcome is `shadow` with `would_apply` the outcome a live workflow gets.
-- The llm-proxy call is written to the ledger in the same transaction. A second call for
-- the same candle records nothing and applies nothing (outcome duplicate) but its call is
-- in the ledger as `duplicate`: it was paid for.
create or replace function public.record_setup_analysis(
    p_workflow_id uuid, p_candle_time timestamptz, p_decision text,
    p_confidence numeric default null, p_reasoning text default '', p_trade_plan jsonb default null,
    p_prompt_tokens integer default 0, p_completion_tokens integer default 0, p_total_tokens integer default 0,
    p_latency_ms integer default null, p_model text default null, p_trace_id text default null,
    p_price numeric default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_wf       public.workflow_schedules%rowtype;
    v_status   text;
    v_analysis uuid;
    v_opened   jsonb;
    v_result   jsonb;
    v_now      timestamptz := public.cmon_now();
begin
    select * into v_wf from public.workflow_schedules
     where id = p_workflow_id and workflow_type = 'setup_monitoring' for update;
    if not found then
        raise exception 'setup workflow % not found', p_workflow_id using errcode = 'P0002';
    end if;
    -- Locked so that a cancellation committed during the LLM call is seen, not overwritten.
    select status into v_status from public.signals where id = v_wf.signal_id for update;

    insert into public.signal_analyses
        (signal_id, workflow_id, decision, confidence, reasoning, trade_plan, analysis_type, candle_time,
         prompt_tokens, completion_tokens, total_tokens, latency_ms, model, trace_id, created_at, shadow)
    values (v_wf.signal_id, v_wf.id, p_decision, p_confidence, coalesce(p_reasoning, ''), p_trade_plan,
            'monitoring', p_candle_time, p_prompt_tokens, p_completion_tokens, p_total_tokens,
            p_latency_ms, p_model, p_trace_id, v_now, v_wf.shadow)
    on conflict (signal_id, candle_time) do nothing
    returning id into v_analysis;
    perform public._ledger_call(v_wf.trader_id, v_wf.id, v_wf.signal_id, null, p_candle_time, 'monitoring',
                                case when v_analysis is null then 'duplicate' else 'ok' end,
                                p_prompt_tokens, p_completion_tokens, p_total_tokens, p_latency_ms,
                                p_model, p_trace_id);
    if v_analysis is null then
        return jsonb_build_object('outcome', 'duplicate');
    end if;

    update public.workflow_schedules
       set last_completed_candle_time = greatest(last_completed_candle_time, p_candle_time),
           consecutive_errors = 0, updated_at = v_now
     where id = v_wf.id;

    if not v_wf.is_active then
        return jsonb_build_object('outcome', 'not_applied', 'analysis_id', v_analysis,
                                  'reason', 'workflow_inactive');
    end if;
    if v_wf.last_candle_time is distinct from p_candle_time then
        -- A newer candle was claimed while this one was analysed: its answer decides.
        return jsonb_build_object('outcome', 'not_applied', 'analysis_id', v_analysis,
                                  'reason', 'stale_candle');
    end if;
    if v_status is null or v_status not in ('new', 'monitoring') then
        perform public.stop_workflow(v_wf.id, 'signal_' || coalesce(v_status, 'gone'));
        return jsonb_build_object('outcome', 'not_applied', 'analysis_id', v_analysis,
                                  'reason', 'signal_' || coalesce(v_status, 'gone'));
    end if;

    if p_decision = 'wait' then
        update public.workflow_schedules set reanalysis_count = reanalysis_count + 1
         where id = v_wf.id returning * into v_wf;
        if v_wf.max_reanalyses is not null and v_wf.reanalysis_count >= v_wf.max_reanalyses then
            perform public.stop_workflow(v_wf.id, 'max_reanalyses');
            update public.signals set status = 'expired', updated_at = v_now
             where id = v_wf.signal_id and status in ('new', 'monitoring') and not v_wf.shadow;
            v_result := jsonb_build_object('outcome', 'expired', 'analysis_id', v_analysis,
                                           'reanalysis_count', v_wf.reanalysis_count);
        else
            v_result := jsonb_build_object('outcome', 'continued', 'analysis_id', v_analysis,
                                           'reanalysis_count', v_wf.reanalysis_count);
        end if;
    elsif p_decision = 'enter_trade' then
        perform public.stop_workflow(v_wf.id, 'entered');
        if v_wf.shadow then
            v_opened := '{}';
        else
            v_opened := public._open_position_from_plan(v_wf.signal_id, coalesce(p_trade_plan, '{}'), p_price);
        end if;
        v_result := jsonb_build_object('outcome', 'entered', 'analysis_id', v_analysis) || v_opened;
    else
        perform public.stop_workflow(v_wf.id, 'bad_setup');
        update public.signals set status = 'expired', updated_at = v_now
         where id = v_wf.signal_id and status in ('new', 'monitoring') and not v_wf.shadow;
        v_result := jsonb_build_object('outcome', 'bad_setup', 'analysis_id', v_analysis);
    end if;
    if v_wf.shadow then
        return v_result || jsonb_build_object('outcome', 'shadow', 'would_apply', v_result ->> 'outcome',
                                              'shadow', true);
    end if;
    return v_result;
end
$$;

-- Record a signal's initial analysis and apply it: wait registers setup monitoring,
-- enter_trade opens the position, bad_setup expires the signal. Once per signal; the
-- call is in the ledger either way. For a user of the shadow cohort the analysis is
-- recorded (shadow) and a `wait` registers a shadow workflow; the signal stays `new`
-- and no position is opened (outcome `shadow`, `would_apply` what live would do).
create or replace function public.record_initial_analysis(
    p_signal_id uuid, p_decision text,
    p_confidence numeric default null, p_reasoning text default '', p_trade_plan jsonb default null,
    p_prompt_tokens integer default 0, p_completion_tokens integer default 0, p_total_tokens integer default 0,
    p_latency_ms integer default null, p_model text default null, p_trace_id text default null,
    p_max_reanalyses integer default 10)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_signal   public.signals%rowtype;
    v_analysis uuid;
    v_result   jsonb;
    v_shadow   boolean;
    v_now      timestamptz := public.cmon_now();
begin
    select * into v_signal from public.signals where id = p_signal_id for update;
    if not found then
        raise exception 'signal % not found', p_signal_id using errcode = 'P0002';
    end if;
    select coalesce(public.rollout_shadow(t.user_id), false) into v_shadow
      from public.traders t where t.id = v_signal.trader_id;
    v_shadow := coalesce(v_shadow, false);
    insert into public.signal_analyses
        (signal_id, decision, confidence, reasoning, trade_plan, analysis_type,
         prompt_tokens, completion_tokens, total_tokens, latency_ms, model, trace_id, created_at, shadow)
    values (p_signal_id, p_decision, p_confidence, coalesce(p_reasoning, ''), p_trade_plan, 'initial',
            p_prompt_tokens, p_completion_tokens, p_total_tokens, p_latency_ms, p_model, p_trace_id, v_now,
            v_shadow)
    on conflict (signal_id) where analysis_type = 'initial' do nothing
    returning id into v_analysis;
    perform public._ledger_call(v_signal.trader_id, null, p_signal_id, null, null, 'initial',
                                case when v_analysis is null then 'duplicate' else 'ok' end,
                                p_prompt_tokens, p_completion_tokens, p_total_tokens, p_latency_ms,
                                p_model, p_trace_id);
    if v_analysis is null then
        return jsonb_build_object('outcome', 'duplicate');
    end if;
    if v_signal.status <> 'new' then  -- cancelled (or otherwise moved on) during the LLM call
        return jsonb_build_object('outcome', 'not_applied', 'analysis_id', v_analysis,
                                  'reason', 'signal_' || v_signal.status);
    end if;

    if p_decision = 'wait' then
        -- Monitoring is not user-visible: a shadow user's wait registers a shadow workflow.
        v_result := public._register_setup(p_signal_id, p_max_reanalyses);
        v_result := jsonb_build_object('outcome', 'monitoring', 'analysis_id', v_analysis,
                                       'registration', v_result, 'workflow_id', v_result -> 'workflow_id');
    elsif p_decision = 'enter_trade' then
        v_result := jsonb_build_object('outcome', 'entered', 'analysis_id', v_analysis);
        if not v_shadow then
            v_result := v_result || public._open_position_from_plan(p_signal_id, coalesce(p_trade_plan, '{}'), null);
        end if;
    else
        if not v_shadow then
            update public.signals set status = 'expired', updated_at = v_now
             where id = p_signal_id and status = 'new';
        end if;
        v_result := jsonb_build_object('outcome', 'bad_setup', 'analysis_id', v_analysis);
    end if;
    if v_shadow then
        return v_result || jsonb_build_object('outcome', 'shadow', 'would_apply', v_result ->> 'outcome',
                                              'shadow', true);
    end if;
    return v_result;
end
$$;

-- Record a management decision for (workflow, candle) and apply it, or record why not.
-- The Python guardrails decide p_verdict and compute the new values; this function
-- re-checks what only the database can know (the candle is still the newest claimed,
-- the position is open and unchanged since it was read) and the hard limits (sizes
-- stay positive; a stop-loss stays on the losing side of the price). An LLM decision
-- (not a paper fill) is written to the ledger in the same transaction. For a shadow
-- workflow the decision is recorded (shadow = true, with the verdict the checks gave)
-- and the position is not touched; a close stops the shadow workflow.
create or replace function public.record_management_decision(
    p_workflow_id uuid, p_candle_time timestamptz, p_action text, p_params jsonb,
    p_verdict text, p_rejection_reason text, p_price numeric, p_expected_version integer,
    p_new_stop_loss numeric default null, p_new_take_profit numeric default null,
    p_reduce_fraction numeric default null, p_exit_price numeric default null,
    p_confidence numeric default null, p_reasoning text default '',
    p_prompt_tokens integer default 0, p_completion_tokens integer default 0, p_total_tokens integer default 0,
    p_latency_ms integer default null, p_model text default null, p_trace_id text default null,
    p_source text default 'llm')
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_wf       public.workflow_schedules%rowtype;
    v_pos      public.positions%rowtype;
    v_before   jsonb;
    v_decision uuid;
    v_reason   text := p_rejection_reason;
    v_qty      numeric;
    v_exit     numeric;
    v_pnl      numeric;
    v_sign     integer;
    v_now      timestamptz := public.cmon_now();
begin
    select * into v_wf from public.workflow_schedules
     where id = p_workflow_id and workflow_type = 'position_management' for update;
    if not found then
        raise exception 'management workflow % not found', p_workflow_id using errcode = 'P0002';
    end if;
    select * into v_pos from public.positions where id = v_wf.position_id for update;
    v_before := public._position_state(v_pos);
    v_sign := case v_pos.side when 'long' then 1 else -1 end;

    if p_verdict is null or p_verdict not in ('apply', 'reject') then
        raise exception 'verdict must be apply or reject, not %', p_verdict using errcode = '22023';
    end if;
    if p_verdict = 'reject' then
        v_reason := coalesce(p_rejection_reason, 'rejected');
    else
        -- Every comparison below is written so that a NULL argument rejects, never skips.
        if v_wf.last_candle_time is distinct from p_candle_time then
            v_reason := 'stale_candle';
        elsif v_pos.status <> 'open' then
            v_reason := 'position_not_open';
        elsif v_pos.version is distinct from p_expected_version then
            v_reason := 'position_changed';
        elsif p_price is null or p_price <= 0 then
            v_reason := 'invalid_price';
        elsif p_action = 'adjust_sl' and (p_new_stop_loss is null or p_new_stop_loss <= 0
              or v_sign * (p_price - p_new_stop_loss) <= 0) then
            v_reason := 'stop_loss_on_wrong_side_of_price';
        elsif p_action = 'adjust_tp' and (p_new_take_profit is null or p_new_take_profit <= 0
              or v_sign * (p_new_take_profit - p_price) <= 0) then
            v_reason := 'take_profit_on_wrong_side_of_price';
        elsif p_action = 'reduce' and (p_reduce_fraction is null or p_reduce_fraction <= 0
              or p_reduce_fraction >= 1) then
            v_reason := 'reduce_fraction_out_of_range';
        elsif p_action not in ('hold', 'adjust_sl', 'adjust_tp', 'reduce', 'close') then
            v_reason := 'unknown_action';
        end if;
    end if;

    insert into public.management_decisions
        (position_id, workflow_id, candle_time, action, params, source, status, rejection_reason,
         price, before_state, confidence, reasoning, prompt_tokens, completion_tokens, total_tokens,
         latency_ms, model, trace_id, created_at, shadow)
    values (v_pos.id, v_wf.id, p_candle_time, p_action, coalesce(p_params, '{}'), p_source,
            case when v_reason is null then 'applied' else 'rejected' end, v_reason,
            p_price, v_before, p_confidence, coalesce(p_reasoning, ''), p_prompt_tokens,
            p_completion_tokens, p_total_tokens, p_latency_ms, p_model, p_trace_id, v_now, v_wf.shadow)
    on conflict (position_id, candle_time) do nothing
    returning id into v_decision;
    if p_source = 'llm' then
        perform public._ledger_call(v_wf.trader_id, v_wf.id, null, v_wf.position_id, p_candle_time,
                                    'position_management',
                                    case when v_decision is null then 'duplicate' else 'ok' end,
                                    p_prompt_tokens, p_completion_tokens, p_total_tokens, p_latency_ms,
                                    p_model, p_trace_id);
    end if;
    if v_decision is null then
        return jsonb_build_object('outcome', 'duplicate');
    end if;

    update public.workflow_schedules
       set last_completed_candle_time = greatest(last_completed_candle_time, p_candle_time),
           consecutive_errors = 0, updated_at = v_now
     where id = v_wf.id;

    if v_reason is not null then
        return jsonb_build_object('outcome', 'rejected', 'decision_id', v_decision, 'reason', v_reason)
               || case when v_wf.shadow then jsonb_build_object('shadow', true) else '{}' end;
    end if;

    if v_wf.shadow then
        -- Recorded, not applied: the position row stays exactly as it is.
        if p_action = 'close' then
            perform public.stop_workflow(v_wf.id, 'position_closed');
        end if;
        return jsonb_build_object('outcome', 'shadow', 'would_apply', 'applied', 'action', p_action,
                                  'decision_id', v_decision, 'position', v_before, 'shadow', true,
                                  'workflow_stopped', p_action = 'close');
    end if;

    if p_action = 'adjust_sl' then
        update public.positions set stop_loss = p_new_stop_loss, updated_at = v_now
         where id = v_pos.id returning * into v_pos;
    elsif p_action = 'adjust_tp' then
        update public.positions set take_profit = p_new_take_profit, updated_at = v_now
         where id = v_pos.id returning * into v_pos;
    elsif p_action = 'reduce' then
        v_qty := v_pos.contracts * p_reduce_fraction;
        v_pnl := v_sign * (p_price - v_pos.entry_price) * v_qty;
        update public.positions
           set contracts = contracts - v_qty, realized_pnl = realized_pnl + v_pnl, updated_at = v_now
         where id = v_pos.id returning * into v_pos;
    elsif p_action = 'close' then
        v_exit := coalesce(p_exit_price, p_price);
        v_pnl := v_sign * (v_exit - v_pos.entry_price) * v_pos.contracts;
        update public.positions
           set status = 'closed', exit_price = v_exit, closed_at = v_now,
               realized_pnl = realized_pnl + v_pnl,
               close_reason = case p_source when 'paper' then coalesce(p_params ->> 'reason', 'paper')
                                            else 'llm_close' end,
               updated_at = v_now
         where id = v_pos.id returning * into v_pos;
        perform public.stop_workflow(v_wf.id, 'position_closed');
    end if;

    update public.management_decisions
       set after_state = public._position_state(v_pos), realized_pnl = v_pnl
     where id = v_decision;
    return jsonb_build_object('outcome', 'applied', 'decision_id', v_decision,
                              'position', public._position_state(v_pos),
                              'workflow_stopped', p_action = 'close');
end
$$;

-- Grants: only the service role (the backend) calls these.
do $$
declare
    v_fn record;
begin
    for v_fn in
        select p.oid::regprocedure as sig
          from pg_proc p join pg_namespace n on n.oid = p.pronamespace
         where n.nspname = 'public'
           and p.proname in ('rollout_shadow_admits', 'rollout_shadow', 'monitoring_allowed', '_rollout_counts',
                             '_workflow_shadow_at_registration', '_llm_call_shadow', '_register_setup',
                             '_open_position_from_plan', 'record_setup_analysis', 'record_initial_analysis',
                             'record_management_decision')
    loop
        execute format('revoke all on function %s from public, anon, authenticated', v_fn.sig);
        execute format('grant execute on function %s to service_role', v_fn.sig);
    end loop;
end
$$;
