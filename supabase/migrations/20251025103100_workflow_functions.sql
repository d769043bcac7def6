-- Workflow invariants as SQL functions: each runs in the caller's single
-- transaction, so "record the analysis and apply its decision" either happens
-- whole or not at all. Python calls these; PostgREST would expose them as RPC.
-- Every function answers a jsonb object whose `action` or `outcome` says what
-- happened, so callers never parse error text.

-- Rollout gate -------------------------------------------------------------

-- Stable 0..99 bucket of a user: the first 32 bits of md5(uuid text), mod 100.
create or replace function public.rollout_bucket(p_user_id uuid)
returns integer
language sql immutable
set search_path = ''
as $$
    select (('x' || substr(md5(p_user_id::text), 1, 8))::bit(32)::bigint % 100)::integer
$$;

create or replace function public.monitoring_allowed(p_user_id uuid)
returns boolean
language sql stable
set search_path = ''
as $$
    -- The inner coalesce fails closed (a NULL element in an array must not let anyone
    -- in); the outer one keeps everyone allowed when no settings row exists at all.
    select coalesce((
        select coalesce(
           r.enabled
           and not coalesce(p_user_id = any (r.deny_user_ids), true)
           and (
                coalesce(p_user_id = any (r.allow_user_ids), false)
                or (
                    (r.tiers is null or exists (
                        select 1 from public.user_profiles u
                        where u.id = p_user_id and u.subscription_tier = any (r.tiers)))
                    and public.rollout_bucket(p_user_id) < r.percent
                )
           ), false)
        from public.rollout_settings r where r.id
    ), true)
$$;

create or replace function public.valid_interval(p_interval text)
returns boolean
language sql immutable
set search_path = ''
as $$
    select p_interval = any (array['1s','1m','3m','5m','15m','30m','1h','2h','4h','6h','8h',
                                   '12h','1d','3d','1w','1M'])
$$;

-- Registration -----------------------------------------------------------------

-- The part both registrations share: the rollout gate, the interval from the trader's
-- filter, and insert-or-find under the unique key (a concurrent registration that wins
-- the key makes this one answer already_registered with the winner's id).
create or replace function public._insert_workflow(
    p_type text, p_signal_id uuid, p_position_id uuid, p_trader_id uuid, p_symbol text,
    p_check_gate boolean, p_max_reanalyses integer)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_trader   public.traders%rowtype;
    v_interval text;
    v_id       uuid;
begin
    select * into v_trader from public.traders where id = p_trader_id;
    if p_check_gate and not public.monitoring_allowed(v_trader.user_id) then
        return jsonb_build_object('action', 'ignored', 'reason', 'rollout_gate');
    end if;
    v_interval := coalesce(v_trader.filter ->> 'interval', '1h');
    if not public.valid_interval(v_interval) then
        return jsonb_build_object('action', 'ignored', 'reason', 'invalid_interval');
    end if;

    insert into public.workflow_schedules
        (workflow_type, signal_id, position_id, trader_id, symbol, interval, max_reanalyses)
    values (p_type, p_signal_id, p_position_id, p_trader_id, p_symbol, v_interval, p_max_reanalyses)
    on conflict do nothing
    returning id into v_id;
    if v_id is null then
        select id into v_id from public.workflow_schedules
         where workflow_type = p_type
           and (case when p_type = 'setup_monitoring' then signal_id = p_signal_id
                     else position_id = p_position_id end);
        return jsonb_build_object('action', 'already_registered', 'workflow_id', v_id, 'is_active', true);
    end if;
    return jsonb_build_object('action', 'registered', 'workflow_id', v_id,
                              'symbol', p_symbol, 'interval', v_interval);
end
$$;

-- Register setup monitoring for a signal (internal: callers have checked the decision).
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
        return jsonb_build_object('action', 'already_registered', 'workflow_id', v_existing.id,
                                  'is_active', v_existing.is_active);
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

-- A `wait` analysis (from the webhook or the reconciler) starts setup monitoring.
-- Idempotent: the second call answers already_registered with the same workflow.
create or replace function public.register_setup_monitoring(p_analysis_id uuid, p_max_reanalyses integer default 10)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_analysis public.signal_analyses%rowtype;
begin
    select * into v_analysis from public.signal_analyses where id = p_analysis_id;
    if not found then
        return jsonb_build_object('action', 'ignored', 'reason', 'analysis_not_found');
    end if;
    if v_analysis.decision <> 'wait' then
        return jsonb_build_object('action', 'ignored', 'reason', 'decision_' || v_analysis.decision);
    end if;
    return public._register_setup(v_analysis.signal_id, p_max_reanalyses);
end
$$;

-- An open position starts position management. Idempotent.
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
        return jsonb_build_object('action', 'already_registered', 'workflow_id', v_existing.id,
                                  'is_active', v_existing.is_active);
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

-- Stopping -------------------------------------------------------------------------

create or replace function public.stop_workflow(p_workflow_id uuid, p_reason text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_active boolean;
begin
    select is_active into v_active from public.workflow_schedules where id = p_workflow_id for update;
    if not found then
        return jsonb_build_object('action', 'ignored', 'reason', 'workflow_not_found');
    end if;
    if not v_active then
        return jsonb_build_object('action', 'already_stopped', 'workflow_id', p_workflow_id);
    end if;
    update public.workflow_schedules
       set is_active = false, stopped_reason = p_reason, stopped_at = now(), updated_at = now()
     where id = p_workflow_id;
    return jsonb_build_object('action', 'stopped', 'workflow_id', p_workflow_id, 'reason', p_reason);
end
$$;

-- The position's webhook said closed or deleted: stop its management workflow.
create or replace function public.stop_position_management(p_position_id uuid, p_reason text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_id uuid;
begin
    select id into v_id from public.workflow_schedules
     where position_id = p_position_id and workflow_type = 'position_management';
    if v_id is null then
        return jsonb_build_object('action', 'ignored', 'reason', 'no_workflow');
    end if;
    return public.stop_workflow(v_id, p_reason);
end
$$;

-- Claims ---------------------------------------------------------------------------

-- Claim (workflow, candle). Succeeds only if the workflow is active, its entity is
-- still open, and the candle is newer than last_candle_time. The row lock makes
-- concurrent claims of one candle serialise: exactly one wins. A claim whose
-- worker died (no outcome recorded after the lease) may be taken over.
create or replace function public.claim_candle(p_workflow_id uuid, p_candle_time timestamptz,
                                               p_lease_seconds integer default 300)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_wf     public.workflow_schedules%rowtype;
    v_status text;
begin
    select * into v_wf from public.workflow_schedules where id = p_workflow_id for update;
    if not found then
        return jsonb_build_object('claimed', false, 'reason', 'not_found');
    end if;
    if not v_wf.is_active then
        return jsonb_build_object('claimed', false, 'reason', 'inactive');
    end if;

    if v_wf.workflow_type = 'setup_monitoring' then
        select status into v_status from public.signals where id = v_wf.signal_id;
        if v_status is null or v_status not in ('new', 'monitoring') then
            perform public.stop_workflow(p_workflow_id, 'signal_' || coalesce(v_status, 'gone'));
            return jsonb_build_object('claimed', false, 'reason', 'entity_closed');
        end if;
    else
        select status into v_status from public.positions where id = v_wf.position_id;
        if v_status is distinct from 'open' then
            perform public.stop_workflow(p_workflow_id, 'position_' || coalesce(v_status, 'gone'));
            return jsonb_build_object('claimed', false, 'reason', 'entity_closed');
        end if;
    end if;

    if v_wf.last_candle_time is null or p_candle_time > v_wf.last_candle_time then
        update public.workflow_schedules
           set last_candle_time = p_candle_time, claimed_at = now(), updated_at = now()
         where id = p_workflow_id;
        return jsonb_build_object('claimed', true, 'reason', 'claimed',
                                  'workflow_type', v_wf.workflow_type);
    end if;
    if p_candle_time = v_wf.last_candle_time
       and v_wf.last_completed_candle_time is distinct from p_candle_time
       and v_wf.claimed_at < now() - make_interval(secs => p_lease_seconds) then
        update public.workflow_schedules set claimed_at = now(), updated_at = now()
         where id = p_workflow_id;
        return jsonb_build_object('claimed', true, 'reason', 'lease_expired',
                                  'workflow_type', v_wf.workflow_type);
    end if;
    if p_candle_time = v_wf.last_candle_time then
        return jsonb_build_object('claimed', false, 'reason', 'duplicate');
    end if;
    return jsonb_build_object('claimed', false, 'reason', 'older_candle');
end
$$;

-- Claim a signal's initial analysis (no candle): once per signal, with a lease.
create or replace function public.claim_initial_analysis(p_signal_id uuid, p_lease_seconds integer default 300)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_signal public.signals%rowtype;
begin
    select * into v_signal from public.signals where id = p_signal_id for update;
    if not found then
        return jsonb_build_object('claimed', false, 'reason', 'not_found');
    end if;
    if exists (select 1 from public.signal_analyses
                where signal_id = p_signal_id and analysis_type = 'initial') then
        return jsonb_build_object('claimed', false, 'reason', 'duplicate');
    end if;
    if v_signal.status <> 'new' then
        return jsonb_build_object('claimed', false, 'reason', 'signal_' || v_signal.status);
    end if;
    if v_signal.initial_claimed_at is not null
       and v_signal.initial_claimed_at >= now() - make_interval(secs => p_lease_seconds) then
        return jsonb_build_object('claimed', false, 'reason', 'duplicate');
    end if;
    update public.signals set initial_claimed_at = now(), updated_at = now() where id = p_signal_id;
    return jsonb_build_object('claimed', true, 'reason', 'claimed');
end
$$;

-- Setup decisions --------------------------------------------------------------------

-- Open the position an enter_trade planned and register its management workflow,
-- in the caller's transaction (so the position's webhook finds it registered).
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
        (trader_id, signal_id, symbol, side, entry_price, contracts, initial_contracts, stop_loss, take_profit)
    values (v_signal.trader_id, p_signal_id, v_signal.symbol, v_side, v_entry,
            coalesce(nullif(p_plan ->> 'contracts', '')::numeric, 1),
            coalesce(nullif(p_plan ->> 'contracts', '')::numeric, 1),
            v_sl, v_tp)
    on conflict (signal_id) where signal_id is not null do nothing
    returning id into v_position;
    if v_position is null then
        select id into v_position from public.positions where signal_id = p_signal_id;
    end if;
    update public.signals set status = 'entered', updated_at = now()
     where id = p_signal_id and status in ('new', 'monitoring');
    v_reg := public.register_position_management(v_position, false);
    return jsonb_build_object('position_id', v_position, 'position_workflow_id', v_reg -> 'workflow_id');
end
$$;

-- Record a monitoring analysis for (workflow, candle) and apply its decision:
--   wait        -> count it; at max_reanalyses stop and expire the signal;
--   enter_trade -> stop, mark the signal entered, open the position, register its management;
--   bad_setup   -> stop and expire the signal.
-- A second call for the same candle records nothing and applies nothing (outcome duplicate).
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
         prompt_tokens, completion_tokens, total_tokens, latency_ms, model, trace_id)
    values (v_wf.signal_id, v_wf.id, p_decision, p_confidence, coalesce(p_reasoning, ''), p_trade_plan,
            'monitoring', p_candle_time, p_prompt_tokens, p_completion_tokens, p_total_tokens,
            p_latency_ms, p_model, p_trace_id)
    on conflict (signal_id, candle_time) do nothing
    returning id into v_analysis;
    if v_analysis is null then
        return jsonb_build_object('outcome', 'duplicate');
    end if;

    update public.workflow_schedules
       set last_completed_candle_time = greatest(last_completed_candle_time, p_candle_time),
           consecutive_errors = 0, updated_at = now()
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
            update public.signals set status = 'expired', updated_at = now()
             where id = v_wf.signal_id and status in ('new', 'monitoring');
            return jsonb_build_object('outcome', 'expired', 'analysis_id', v_analysis,
                                      'reanalysis_count', v_wf.reanalysis_count);
        end if;
        return jsonb_build_object('outcome', 'continued', 'analysis_id', v_analysis,
                                  'reanalysis_count', v_wf.reanalysis_count);
    elsif p_decision = 'enter_trade' then
        perform public.stop_workflow(v_wf.id, 'entered');
        v_opened := public._open_position_from_plan(v_wf.signal_id, coalesce(p_trade_plan, '{}'), p_price);
        return jsonb_build_object('outcome', 'entered', 'analysis_id', v_analysis) || v_opened;
    else
        perform public.stop_workflow(v_wf.id, 'bad_setup');
        update public.signals set status = 'expired', updated_at = now()
         where id = v_wf.signal_id and status in ('new', 'monitoring');
        return jsonb_build_object('outcome', 'bad_setup', 'analysis_id', v_analysis);
    end if;
end
$$;

-- Record a signal's initial analysis and apply it: wait registers setup monitoring,
-- enter_trade opens the position, bad_setup expires the signal. Once per signal.
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
    v_status   text;
    v_analysis uuid;
    v_result   jsonb;
begin
    select status into v_status from public.signals where id = p_signal_id for update;
    if not found then
        raise exception 'signal % not found', p_signal_id using errcode = 'P0002';
    end if;
    insert into public.signal_analyses
        (signal_id, decision, confidence, reasoning, trade_plan, analysis_type,
         prompt_tokens, completion_tokens, total_tokens, latency_ms, model, trace_id)
    values (p_signal_id, p_decision, p_confidence, coalesce(p_reasoning, ''), p_trade_plan, 'initial',
            p_prompt_tokens, p_completion_tokens, p_total_tokens, p_latency_ms, p_model, p_trace_id)
    on conflict (signal_id) where analysis_type = 'initial' do nothing
    returning id into v_analysis;
    if v_analysis is null then
        return jsonb_build_object('outcome', 'duplicate');
    end if;
    if v_status <> 'new' then  -- cancelled (or otherwise moved on) during the LLM call
        return jsonb_build_object('outcome', 'not_applied', 'analysis_id', v_analysis,
                                  'reason', 'signal_' || v_status);
    end if;

    if p_decision = 'wait' then
        v_result := public._register_setup(p_signal_id, p_max_reanalyses);
        return jsonb_build_object('outcome', 'monitoring', 'analysis_id', v_analysis,
                                  'registration', v_result, 'workflow_id', v_result -> 'workflow_id');
    elsif p_decision = 'enter_trade' then
        v_result := public._open_position_from_plan(p_signal_id, coalesce(p_trade_plan, '{}'), null);
        return jsonb_build_object('outcome', 'entered', 'analysis_id', v_analysis) || v_result;
    else
        update public.signals set status = 'expired', updated_at = now()
         where id = p_signal_id and status = 'new';
        return jsonb_build_object('outcome', 'bad_setup', 'analysis_id', v_analysis);
    end if;
end
$$;

-- Management decisions ------------------------------------------------------------------

create or replace function public._position_state(p public.positions)
returns jsonb
language sql immutable
set search_path = ''
as $$
    select jsonb_build_object('contracts', p.contracts, 'stop_loss', p.stop_loss,
                              'take_profit', p.take_profit, 'status', p.status,
                              'realized_pnl', p.realized_pnl, 'version', p.version)
$$;

-- Record a management decision for (workflow, candle) and apply it, or record why not.
-- The Python guardrails decide p_verdict and compute the new values; this function
-- re-checks what only the database can know (the candle is still the newest claimed,
-- the position is open and unchanged since it was read) and the hard limits (sizes
-- stay positive; a stop-loss stays on the losing side of the price).
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
         latency_ms, model, trace_id)
    values (v_pos.id, v_wf.id, p_candle_time, p_action, coalesce(p_params, '{}'), p_source,
            case when v_reason is null then 'applied' else 'rejected' end, v_reason,
            p_price, v_before, p_confidence, coalesce(p_reasoning, ''), p_prompt_tokens,
            p_completion_tokens, p_total_tokens, p_latency_ms, p_model, p_trace_id)
    on conflict (position_id, candle_time) do nothing
    returning id into v_decision;
    if v_decision is null then
        return jsonb_build_object('outcome', 'duplicate');
    end if;

    update public.workflow_schedules
       set last_completed_candle_time = greatest(last_completed_candle_time, p_candle_time),
           consecutive_errors = 0, updated_at = now()
     where id = v_wf.id;

    if v_reason is not null then
        return jsonb_build_object('outcome', 'rejected', 'decision_id', v_decision, 'reason', v_reason);
    end if;

    if p_action = 'adjust_sl' then
        update public.positions set stop_loss = p_new_stop_loss, updated_at = now()
         where id = v_pos.id returning * into v_pos;
    elsif p_action = 'adjust_tp' then
        update public.positions set take_profit = p_new_take_profit, updated_at = now()
         where id = v_pos.id returning * into v_pos;
    elsif p_action = 'reduce' then
        v_qty := v_pos.contracts * p_reduce_fraction;
        v_pnl := v_sign * (p_price - v_pos.entry_price) * v_qty;
        update public.positions
           set contracts = contracts - v_qty, realized_pnl = realized_pnl + v_pnl, updated_at = now()
         where id = v_pos.id returning * into v_pos;
    elsif p_action = 'close' then
        v_exit := coalesce(p_exit_price, p_price);
        v_pnl := v_sign * (v_exit - v_pos.entry_price) * v_pos.contracts;
        update public.positions
           set status = 'closed', exit_price = v_exit, closed_at = now(),
               realized_pnl = realized_pnl + v_pnl,
               close_reason = case p_source when 'paper' then coalesce(p_params ->> 'reason', 'paper')
                                            else 'llm_close' end,
               updated_at = now()
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

-- Failures ----------------------------------------------------------------------------------

-- A failed attempt (llm-proxy down, invalid answer): count it against the workflow,
-- keep the error, and at p_max_errors disable the workflow and notify its user once.
-- The candle counts as done: its message is not redelivered.
create or replace function public.record_workflow_failure(
    p_workflow_id uuid, p_candle_time timestamptz, p_error_kind text, p_message text,
    p_max_errors integer default 5)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_wf   public.workflow_schedules%rowtype;
    v_user uuid;
begin
    select * into v_wf from public.workflow_schedules where id = p_workflow_id for update;
    if not found then
        raise exception 'workflow % not found', p_workflow_id using errcode = 'P0002';
    end if;
    insert into public.workflow_errors (workflow_id, signal_id, candle_time, error_kind, message)
    values (v_wf.id, v_wf.signal_id, p_candle_time, p_error_kind, left(p_message, 2000));
    update public.workflow_schedules
       set consecutive_errors = consecutive_errors + 1, last_error = left(p_message, 2000),
           last_error_at = now(),
           last_completed_candle_time = greatest(last_completed_candle_time, p_candle_time),
           updated_at = now()
     where id = v_wf.id
    returning * into v_wf;

    if v_wf.is_active and v_wf.consecutive_errors >= p_max_errors then
        perform public.stop_workflow(v_wf.id, 'auto_disabled');
        select user_id into v_user from public.traders where id = v_wf.trader_id;
        insert into public.notifications (user_id, workflow_id, kind, title, body, payload)
        values (v_user, v_wf.id, 'workflow_disabled',
                'Monitoring paused for ' || v_wf.symbol,
                format('%s on %s %s was disabled after %s consecutive errors. Last error: %s',
                       replace(v_wf.workflow_type, '_', ' '), v_wf.symbol, v_wf.interval,
                       v_wf.consecutive_errors, left(p_message, 300)),
                jsonb_build_object('workflow_id', v_wf.id, 'workflow_type', v_wf.workflow_type,
                                   'consecutive_errors', v_wf.consecutive_errors))
        on conflict (workflow_id) where kind = 'workflow_disabled' do nothing;
        return jsonb_build_object('consecutive_errors', v_wf.consecutive_errors, 'disabled', true);
    end if;
    return jsonb_build_object('consecutive_errors', v_wf.consecutive_errors, 'disabled', false);
end
$$;

-- A failed initial analysis is kept for the record. A transient one (llm-proxy down)
-- releases the claim, so the reconciler queues the signal again within its window;
-- a permanent one (an invalid answer) is not retried behind the operator's back.
create or replace function public.record_initial_failure(p_signal_id uuid, p_error_kind text, p_message text,
                                                         p_release_claim boolean default false)
returns jsonb
language plpgsql
set search_path = ''
as $$
begin
    insert into public.workflow_errors (signal_id, error_kind, message)
    values (p_signal_id, p_error_kind, left(p_message, 2000));
    if p_release_claim then
        update public.signals set initial_claimed_at = null, updated_at = now() where id = p_signal_id;
    end if;
    return jsonb_build_object('recorded', true, 'claim_released', p_release_claim);
end
$$;

-- Fan-out and reconciliation ---------------------------------------------------------------

-- Active workflows of (symbol, interval) that have not claimed this candle yet.
create or replace function public.workflows_for_candle(p_symbol text, p_interval text, p_candle_time timestamptz)
returns table (workflow_id uuid, workflow_type text)
language sql stable
set search_path = ''
as $$
    select w.id, w.workflow_type
      from public.workflow_schedules w
     where w.is_active and w.symbol = p_symbol and w.interval = p_interval
       and (w.last_candle_time is null or w.last_candle_time < p_candle_time)
     order by w.created_at, w.id
$$;

-- What a lost or reordered webhook missed: register wait analyses and open positions
-- with no workflow; stop workflows whose signal or position is closed. Safe to run
-- concurrently with the webhooks (registration is idempotent, stops are row-locked).
create or replace function public.reconcile_workflows(p_max_reanalyses integer default 10)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_rec        record;
    v_result     jsonb;
    v_setup      jsonb := '[]';
    v_positions  jsonb := '[]';
    v_stopped    jsonb := '[]';
begin
    -- Signals whose latest analysis is `wait` and that are not monitored yet.
    for v_rec in
        select s.id as signal_id
          from public.signals s
         where s.status in ('new', 'monitoring')
           and not exists (select 1 from public.workflow_schedules w
                            where w.signal_id = s.id and w.workflow_type = 'setup_monitoring')
           and (select a.decision from public.signal_analyses a
                 where a.signal_id = s.id order by a.created_at desc, a.id desc limit 1) = 'wait'
    loop
        v_result := public._register_setup(v_rec.signal_id, p_max_reanalyses);
        if v_result ->> 'action' = 'registered' then
            v_setup := v_setup || jsonb_build_array(v_result -> 'workflow_id');
        end if;
    end loop;

    for v_rec in
        select p.id as position_id
          from public.positions p
         where p.status = 'open'
           and not exists (select 1 from public.workflow_schedules w
                            where w.position_id = p.id and w.workflow_type = 'position_management')
    loop
        v_result := public.register_position_management(v_rec.position_id);
        if v_result ->> 'action' = 'registered' then
            v_positions := v_positions || jsonb_build_array(v_result -> 'workflow_id');
        end if;
    end loop;

    for v_rec in
        select w.id, case when w.workflow_type = 'setup_monitoring'
                          then 'signal_' || s.status else 'position_' || p.status end as reason
          from public.workflow_schedules w
          left join public.signals s on s.id = w.signal_id and w.workflow_type = 'setup_monitoring'
          left join public.positions p on p.id = w.position_id
         where w.is_active
           and ((w.workflow_type = 'setup_monitoring' and s.status not in ('new', 'monitoring'))
             or (w.workflow_type = 'position_management' and p.status <> 'open'))
    loop
        v_result := public.stop_workflow(v_rec.id, v_rec.reason);
        if v_result ->> 'action' = 'stopped' then
            v_stopped := v_stopped || jsonb_build_array(v_rec.id);
        end if;
    end loop;

    return jsonb_build_object(
        'registered_setup', v_setup, 'registered_positions', v_positions, 'stopped', v_stopped,
        'active_setup', (select count(*) from public.workflow_schedules
                          where is_active and workflow_type = 'setup_monitoring'),
        'active_positions', (select count(*) from public.workflow_schedules
                              where is_active and workflow_type = 'position_management'));
end
$$;

-- Only the service role (the backend) calls these; signed-in users read tables through RLS.
do $$
declare
    v_fn record;
begin
    for v_fn in
        select p.oid::regprocedure as sig
          from pg_proc p join pg_namespace n on n.oid = p.pronamespace
         where n.nspname = 'public'
           and p.proname in ('rollout_bucket', 'monitoring_allowed', 'valid_interval', '_insert_workflow',
                             '_register_setup',
                             'register_setup_monitoring', 'register_position_management', 'stop_workflow',
                             'stop_position_management', 'claim_candle', 'claim_initial_analysis',
                             '_open_position_from_plan', 'record_setup_analysis', 'record_initial_analysis',
                             '_position_state', 'record_management_decision', 'record_workflow_failure',
                             'record_initial_failure', 'workflows_for_candle', 'reconcile_workflows')
    loop
        execute format('revoke all on function %s from public, anon, authenticated', v_fn.sig);
        execute format('grant execute on function %s to service_role', v_fn.sig);
    end loop;
end
$$;
