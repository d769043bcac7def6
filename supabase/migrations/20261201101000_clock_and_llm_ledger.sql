-- One SQL clock, one ledger of llm-proxy calls, and the per-user daily token cap.
--
-- `cmon_now()` is the only "now" the workflow functions read: a replay or a test sets
-- the transaction-local setting `cmon.now` and every function sees that instant, with no
-- second code path. `llm_calls` holds one row per llm-proxy call that reported usage,
-- written by the same SQL function (and transaction) that records the call's outcome, so
-- cost, the cap, the token alarm and the duplicate measure all read one place.

create or replace function public.cmon_now()
returns timestamptz
language sql stable
set search_path = ''
as $$
    select coalesce(nullif(current_setting('cmon.now', true), '')::timestamptz, now())
$$;

-- Length of one candle of a Binance interval in seconds (31 days for `1M`, an upper
-- bound, as functions/core/intervals.py); null for an interval Binance does not publish.
create or replace function public.interval_seconds(p_interval text)
returns integer
language sql immutable
set search_path = ''
as $$
    select case
        when p_interval = '1M' then 31 * 86400
        when p_interval ~ '^[0-9]+[smhdw]$' and public.valid_interval(p_interval) then
            substr(p_interval, 1, length(p_interval) - 1)::integer
            * case right(p_interval, 1) when 's' then 1 when 'm' then 60 when 'h' then 3600
                                        when 'd' then 86400 else 604800 end
    end
$$;

-- The ledger ------------------------------------------------------------------------------

create table if not exists public.llm_calls (
    id                uuid primary key default gen_random_uuid(),
    user_id           uuid not null references public.user_profiles (id) on delete cascade,
    trader_id         uuid references public.traders (id) on delete set null,
    workflow_id       uuid references public.workflow_schedules (id) on delete set null,
    signal_id         uuid references public.signals (id) on delete set null,
    position_id       uuid references public.positions (id) on delete set null,
    -- Close time of the candle the call was about; null for a signal's initial analysis.
    candle_time       timestamptz,
    operation         text not null check (operation in ('analyze_signal', 'manage_position')),
    analysis_type     text not null check (analysis_type in ('initial', 'monitoring', 'position_management')),
    -- ok: the answer was recorded; duplicate: recorded before by another delivery (paid twice);
    -- otherwise the error kind of the failed attempt (llm_invalid_answer, record_rejected, ...).
    outcome           text not null,
    prompt_tokens     integer not null default 0 check (prompt_tokens >= 0),
    completion_tokens integer not null default 0 check (completion_tokens >= 0),
    total_tokens      integer not null default 0 check (total_tokens >= 0),
    latency_ms        integer check (latency_ms >= 0),
    model             text,
    trace_id          text,
    created_at        timestamptz not null default public.cmon_now()
);
-- The cap's query (one user's tokens today) and the window scans of `cmon metrics`.
create index if not exists llm_calls_user_created_idx on public.llm_calls (user_id, created_at);
create index if not exists llm_calls_created_idx on public.llm_calls (created_at);
-- The duplicate measure: calls per (workflow, candle).
create index if not exists llm_calls_workflow_candle_idx on public.llm_calls (workflow_id, candle_time);

alter table public.llm_calls enable row level security;
create policy llm_calls_read_own on public.llm_calls
    for select to authenticated using (user_id = (select auth.uid()));
revoke all on public.llm_calls from anon, authenticated;
grant select on public.llm_calls to authenticated;
grant all on public.llm_calls to service_role;

-- Write one ledger row (internal: the record functions call it in their transaction).
create or replace function public._ledger_call(
    p_trader_id uuid, p_workflow_id uuid, p_signal_id uuid, p_position_id uuid,
    p_candle_time timestamptz, p_analysis_type text, p_outcome text,
    p_prompt_tokens integer, p_completion_tokens integer, p_total_tokens integer,
    p_latency_ms integer, p_model text, p_trace_id text)
returns void
language sql
set search_path = ''
as $$
    insert into public.llm_calls
        (user_id, trader_id, workflow_id, signal_id, position_id, candle_time, operation,
         analysis_type, outcome, prompt_tokens, completion_tokens, total_tokens, latency_ms,
         model, trace_id, created_at)
    select t.user_id, t.id, p_workflow_id, p_signal_id, p_position_id, p_candle_time,
           case p_analysis_type when 'position_management' then 'manage_position' else 'analyze_signal' end,
           p_analysis_type, p_outcome, coalesce(p_prompt_tokens, 0), coalesce(p_completion_tokens, 0),
           coalesce(p_total_tokens, 0), p_latency_ms, p_model, p_trace_id, public.cmon_now()
      from public.traders t where t.id = p_trader_id
$$;

-- The daily cap ---------------------------------------------------------------------------

alter table public.rollout_settings
    add column if not exists daily_token_cap bigint not null default 0 check (daily_token_cap >= 0);
-- Optional per-tier caps, e.g. {"free": 20000, "elite": 200000}; a tier not named uses
-- daily_token_cap. 0 means no cap.
alter table public.rollout_settings
    add column if not exists daily_token_cap_by_tier jsonb not null default '{}'::jsonb
        check (jsonb_typeof(daily_token_cap_by_tier) = 'object');

-- One token_cap_reached notification per user per UTC day.
create unique index if not exists notifications_one_token_cap_per_user_day
    on public.notifications (user_id, (payload ->> 'day')) where kind = 'token_cap_reached';

-- The user's cap and tokens spent on the current UTC day of cmon_now().
create or replace function public.user_token_budget(p_user_id uuid)
returns jsonb
language sql stable
set search_path = ''
as $$
    select jsonb_build_object(
        'cap', coalesce((
            select coalesce(nullif(r.daily_token_cap_by_tier ->> u.subscription_tier, '')::bigint,
                            r.daily_token_cap)
              from public.rollout_settings r
              left join public.user_profiles u on u.id = p_user_id
             where r.id), 0),
        'tokens_today', (
            select coalesce(sum(c.total_tokens), 0)
              from public.llm_calls c
             where c.user_id = p_user_id
               and c.created_at >= (date_trunc('day', public.cmon_now() at time zone 'UTC') at time zone 'UTC')),
        'day', to_char(public.cmon_now() at time zone 'UTC', 'YYYY-MM-DD'))
$$;

-- Refuse a job of a user at or over the cap (null when under it or uncapped): the refusal
-- writes the day's one token_cap_reached notification for the user.
create or replace function public._token_cap_refusal(p_user_id uuid, p_workflow_id uuid)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_budget jsonb := public.user_token_budget(p_user_id);
begin
    if p_user_id is null or (v_budget ->> 'cap')::bigint <= 0
       or (v_budget ->> 'tokens_today')::bigint < (v_budget ->> 'cap')::bigint then
        return null;
    end if;
    insert into public.notifications (user_id, workflow_id, kind, title, body, payload, created_at)
    values (p_user_id, p_workflow_id, 'token_cap_reached', 'Daily analysis budget reached',
            format('Your %s LLM tokens for %s (UTC) are used up; monitoring continues tomorrow. '
                   'Workflows stay active; analyses are skipped until then.',
                   v_budget ->> 'cap', v_budget ->> 'day'),
            v_budget, public.cmon_now())
    on conflict (user_id, (payload ->> 'day')) where kind = 'token_cap_reached' do nothing;
    return jsonb_build_object('claimed', false, 'reason', 'token_cap') || v_budget;
end
$$;

-- Claims ----------------------------------------------------------------------------------

-- Claim (workflow, candle). Succeeds only if the workflow is active, its entity is still
-- open, the candle is newer than last_candle_time (or the same candle whose lease expired
-- with no outcome), the candle is not older than p_stale_intervals intervals by the
-- database's clock (`stale`: a backlog or a DLQ redrive never analyses an old market),
-- and the workflow's user is under the daily token cap (`token_cap`). Refusals change
-- nothing on the workflow (it stays active; nothing counts toward auto-disable). The
-- row lock makes concurrent claims of one candle serialise: exactly one wins.
drop function if exists public.claim_candle(uuid, timestamptz, integer);
create or replace function public.claim_candle(p_workflow_id uuid, p_candle_time timestamptz,
                                               p_lease_seconds integer default 300,
                                               p_stale_intervals integer default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_wf      public.workflow_schedules%rowtype;
    v_status  text;
    v_now     timestamptz := public.cmon_now();
    v_reason  text;
    v_user    uuid;
    v_refusal jsonb;
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
        v_reason := 'claimed';
    elsif p_candle_time = v_wf.last_candle_time
          and v_wf.last_completed_candle_time is distinct from p_candle_time
          and v_wf.claimed_at < v_now - make_interval(secs => p_lease_seconds) then
        v_reason := 'lease_expired';
    elsif p_candle_time = v_wf.last_candle_time then
        return jsonb_build_object('claimed', false, 'reason', 'duplicate');
    else
        return jsonb_build_object('claimed', false, 'reason', 'older_candle');
    end if;

    if p_stale_intervals is not null
       and p_candle_time < v_now - make_interval(
               secs => p_stale_intervals::double precision
                       * coalesce(public.interval_seconds(v_wf.interval), 0)) then
        return jsonb_build_object('claimed', false, 'reason', 'stale',
                                  'age_seconds', extract(epoch from v_now - p_candle_time)::bigint);
    end if;

    select user_id into v_user from public.traders where id = v_wf.trader_id;
    v_refusal := public._token_cap_refusal(v_user, v_wf.id);
    if v_refusal is not null then
        return v_refusal;
    end if;

    update public.workflow_schedules
       set last_candle_time = p_candle_time, claimed_at = v_now, updated_at = v_now
     where id = p_workflow_id;
    return jsonb_build_object('claimed', true, 'reason', v_reason, 'workflow_type', v_wf.workflow_type);
end
$$;

-- Claim a signal's initial analysis (no candle): once per signal, with a lease, and only
-- while its user is under the daily token cap.
create or replace function public.claim_initial_analysis(p_signal_id uuid, p_lease_seconds integer default 300)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_signal  public.signals%rowtype;
    v_now     timestamptz := public.cmon_now();
    v_user    uuid;
    v_refusal jsonb;
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
       and v_signal.initial_claimed_at >= v_now - make_interval(secs => p_lease_seconds) then
        return jsonb_build_object('claimed', false, 'reason', 'duplicate');
    end if;
    select user_id into v_user from public.traders where id = v_signal.trader_id;
    v_refusal := public._token_cap_refusal(v_user, null);
    if v_refusal is not null then
        return v_refusal;
    end if;
    update public.signals set initial_claimed_at = v_now, updated_at = v_now where id = p_signal_id;
    return jsonb_build_object('claimed', true, 'reason', 'claimed');
end
$$;

-- Setup decisions ---------------------------------------------------------------------------

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
    return jsonb_build_object('position_id', v_position, 'position_workflow_id', v_reg -> 'workflow_id');
end
$$;

-- Record a monitoring analysis for (workflow, candle) and apply its decision:
--   wait        -> count it; at max_reanalyses stop and expire the signal;
--   enter_trade -> stop, mark the signal entered, open the position, register its management;
--   bad_setup   -> stop and expire the signal.
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
         prompt_tokens, completion_tokens, total_tokens, latency_ms, model, trace_id, created_at)
    values (v_wf.signal_id, v_wf.id, p_decision, p_confidence, coalesce(p_reasoning, ''), p_trade_plan,
            'monitoring', p_candle_time, p_prompt_tokens, p_completion_tokens, p_total_tokens,
            p_latency_ms, p_model, p_trace_id, v_now)
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
        update public.signals set status = 'expired', updated_at = v_now
         where id = v_wf.signal_id and status in ('new', 'monitoring');
        return jsonb_build_object('outcome', 'bad_setup', 'analysis_id', v_analysis);
    end if;
end
$$;

-- Record a signal's initial analysis and apply it: wait registers setup monitoring,
-- enter_trade opens the position, bad_setup expires the signal. Once per signal; the
-- call is in the ledger either way.
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
    v_now      timestamptz := public.cmon_now();
begin
    select * into v_signal from public.signals where id = p_signal_id for update;
    if not found then
        raise exception 'signal % not found', p_signal_id using errcode = 'P0002';
    end if;
    insert into public.signal_analyses
        (signal_id, decision, confidence, reasoning, trade_plan, analysis_type,
         prompt_tokens, completion_tokens, total_tokens, latency_ms, model, trace_id, created_at)
    values (p_signal_id, p_decision, p_confidence, coalesce(p_reasoning, ''), p_trade_plan, 'initial',
            p_prompt_tokens, p_completion_tokens, p_total_tokens, p_latency_ms, p_model, p_trace_id, v_now)
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
        v_result := public._register_setup(p_signal_id, p_max_reanalyses);
        return jsonb_build_object('outcome', 'monitoring', 'analysis_id', v_analysis,
                                  'registration', v_result, 'workflow_id', v_result -> 'workflow_id');
    elsif p_decision = 'enter_trade' then
        v_result := public._open_position_from_plan(p_signal_id, coalesce(p_trade_plan, '{}'), null);
        return jsonb_build_object('outcome', 'entered', 'analysis_id', v_analysis) || v_result;
    else
        update public.signals set status = 'expired', updated_at = v_now
         where id = p_signal_id and status = 'new';
        return jsonb_build_object('outcome', 'bad_setup', 'analysis_id', v_analysis);
    end if;
end
$$;

-- Management decisions ----------------------------------------------------------------------

-- Record a management decision for (workflow, candle) and apply it, or record why not.
-- The Python guardrails decide p_verdict and compute the new values; this function
-- re-checks what only the database can know (the candle is still the newest claimed,
-- the position is open and unchanged since it was read) and the hard limits (sizes
-- stay positive; a stop-loss stays on the losing side of the price). An LLM decision
-- (not a paper fill) is written to the ledger in the same transaction.
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
         latency_ms, model, trace_id, created_at)
    values (v_pos.id, v_wf.id, p_candle_time, p_action, coalesce(p_params, '{}'), p_source,
            case when v_reason is null then 'applied' else 'rejected' end, v_reason,
            p_price, v_before, p_confidence, coalesce(p_reasoning, ''), p_prompt_tokens,
            p_completion_tokens, p_total_tokens, p_latency_ms, p_model, p_trace_id, v_now)
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
        return jsonb_build_object('outcome', 'rejected', 'decision_id', v_decision, 'reason', v_reason);
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

-- Failures ----------------------------------------------------------------------------------

-- A failed attempt (llm-proxy down, invalid answer, the database refused the answer):
-- count it against the workflow, keep the error, and at p_max_errors disable the
-- workflow and notify its user once (the notification says how to resume). The candle
-- counts as done: its message is not redelivered. When the failed call's answer reported
-- usage (p_total_tokens not null), the call is written to the ledger with the error kind
-- as its outcome: those tokens were paid for too.
drop function if exists public.record_workflow_failure(uuid, timestamptz, text, text, integer);
create or replace function public.record_workflow_failure(
    p_workflow_id uuid, p_candle_time timestamptz, p_error_kind text, p_message text,
    p_max_errors integer default 5,
    p_prompt_tokens integer default null, p_completion_tokens integer default null,
    p_total_tokens integer default null, p_latency_ms integer default null,
    p_model text default null, p_trace_id text default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_wf   public.workflow_schedules%rowtype;
    v_user uuid;
    v_now  timestamptz := public.cmon_now();
begin
    select * into v_wf from public.workflow_schedules where id = p_workflow_id for update;
    if not found then
        raise exception 'workflow % not found', p_workflow_id using errcode = 'P0002';
    end if;
    if p_total_tokens is not null then
        perform public._ledger_call(v_wf.trader_id, v_wf.id, v_wf.signal_id, v_wf.position_id, p_candle_time,
                                    case v_wf.workflow_type when 'setup_monitoring' then 'monitoring'
                                                            else 'position_management' end,
                                    p_error_kind, p_prompt_tokens, p_completion_tokens, p_total_tokens,
                                    p_latency_ms, p_model, p_trace_id);
    end if;
    insert into public.workflow_errors (workflow_id, signal_id, candle_time, error_kind, message, created_at)
    values (v_wf.id, v_wf.signal_id, p_candle_time, p_error_kind, left(p_message, 2000), v_now);
    update public.workflow_schedules
       set consecutive_errors = consecutive_errors + 1, last_error = left(p_message, 2000),
           last_error_at = v_now,
           last_completed_candle_time = greatest(last_completed_candle_time, p_candle_time),
           updated_at = v_now
     where id = v_wf.id
    returning * into v_wf;

    if v_wf.is_active and v_wf.consecutive_errors >= p_max_errors then
        perform public.stop_workflow(v_wf.id, 'auto_disabled');
        select user_id into v_user from public.traders where id = v_wf.trader_id;
        insert into public.notifications (user_id, workflow_id, kind, title, body, payload, created_at)
        values (v_user, v_wf.id, 'workflow_disabled',
                'Monitoring paused for ' || v_wf.symbol,
                format('%s on %s %s was disabled after %s consecutive errors. Last error: %s. '
                       'To resume it once the cause is fixed: `cmon workflows resume %s`, '
                       '`POST /workflows/%s/resume` (admin API), or the resume_my_workflow RPC '
                       'with workflow id %s.',
                       replace(v_wf.workflow_type, '_', ' '), v_wf.symbol, v_wf.interval,
                       v_wf.consecutive_errors, left(p_message, 300), v_wf.id, v_wf.id, v_wf.id),
                jsonb_build_object('workflow_id', v_wf.id, 'workflow_type', v_wf.workflow_type,
                                   'consecutive_errors', v_wf.consecutive_errors,
                                   'resume', jsonb_build_object(
                                       'cli', format('cmon workflows resume %s', v_wf.id),
                                       'api', format('POST /workflows/%s/resume', v_wf.id),
                                       'rpc', 'resume_my_workflow',
                                       'rpc_args', jsonb_build_object('p_workflow_id', v_wf.id))),
                v_now)
        on conflict (workflow_id) where kind = 'workflow_disabled' do nothing;
        return jsonb_build_object('consecutive_errors', v_wf.consecutive_errors, 'disabled', true);
    end if;
    return jsonb_build_object('consecutive_errors', v_wf.consecutive_errors, 'disabled', false);
end
$$;

-- A failed initial analysis is kept for the record (and its call in the ledger when its
-- answer reported usage). A transient one (llm-proxy down) releases the claim, so the
-- reconciler queues the signal again within its window; a permanent one (an invalid
-- answer) is not retried behind the operator's back.
drop function if exists public.record_initial_failure(uuid, text, text, boolean);
create or replace function public.record_initial_failure(
    p_signal_id uuid, p_error_kind text, p_message text, p_release_claim boolean default false,
    p_prompt_tokens integer default null, p_completion_tokens integer default null,
    p_total_tokens integer default null, p_latency_ms integer default null,
    p_model text default null, p_trace_id text default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_now    timestamptz := public.cmon_now();
    v_trader uuid;
begin
    if p_total_tokens is not null then
        select trader_id into v_trader from public.signals where id = p_signal_id;
        perform public._ledger_call(v_trader, null, p_signal_id, null, null, 'initial', p_error_kind,
                                    p_prompt_tokens, p_completion_tokens, p_total_tokens, p_latency_ms,
                                    p_model, p_trace_id);
    end if;
    insert into public.workflow_errors (signal_id, error_kind, message, created_at)
    values (p_signal_id, p_error_kind, left(p_message, 2000), v_now);
    if p_release_claim then
        update public.signals set initial_claimed_at = null, updated_at = v_now where id = p_signal_id;
    end if;
    return jsonb_build_object('recorded', true, 'claim_released', p_release_claim);
end
$$;

-- Only the service role (the backend) calls these; signed-in users read the ledger through RLS.
do $$
declare
    v_fn record;
begin
    for v_fn in
        select p.oid::regprocedure as sig
          from pg_proc p join pg_namespace n on n.oid = p.pronamespace
         where n.nspname = 'public'
           and p.proname in ('cmon_now', 'interval_seconds', '_ledger_call', 'user_token_budget',
                             '_token_cap_refusal', 'claim_candle', 'claim_initial_analysis',
                             '_open_position_from_plan', 'record_setup_analysis', 'record_initial_analysis',
                             'record_management_decision', 'record_workflow_failure', 'record_initial_failure')
    loop
        execute format('revoke all on function %s from public, anon, authenticated', v_fn.sig);
        execute format('grant execute on function %s to service_role', v_fn.sig);
    end loop;
end
$$;
