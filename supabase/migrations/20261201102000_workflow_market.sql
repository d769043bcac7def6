-- A workflow knows its market: `spot` or `usdm` (Binance USD-M futures).
--
-- BTCUSDT-1m on spot and BTCUSDT-1m on USD-M are two different candle streams with
-- different prices. Two feeds (one per market) may publish on the same bus; without
-- the market in the match, every workflow of the pair would be driven twice per close,
-- once by a market it does not trade. The market comes from the trader's filter
-- (`filter->>'market'`, default `spot`), like the interval does.

alter table public.workflow_schedules
    add column if not exists market text not null default 'spot';

-- Existing workflows take their trader's market; an absent or unusable value keeps the
-- documented default (`spot`), which is what every workflow was driven by until now.
update public.workflow_schedules w
   set market = lower(btrim(t.filter ->> 'market'))
  from public.traders t
 where t.id = w.trader_id
   and lower(btrim(t.filter ->> 'market')) in ('spot', 'usdm')
   and w.market is distinct from lower(btrim(t.filter ->> 'market'));

alter table public.workflow_schedules
    drop constraint if exists workflow_market_known;
alter table public.workflow_schedules
    add constraint workflow_market_known check (market in ('spot', 'usdm'));

-- The fan-out's hot query now filters on the market too.
drop index if exists public.workflow_active_by_stream;
create index if not exists workflow_active_by_market_stream
    on public.workflow_schedules (market, symbol, interval)
    include (workflow_type, last_candle_time) where is_active;

-- Registration: as before, plus the market from the trader's filter. A market that is
-- neither `spot` nor `usdm` is refused like an unknown interval (no feed serves it).
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
    v_market   text;
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
    v_market := lower(btrim(coalesce(v_trader.filter ->> 'market', 'spot')));
    if v_market not in ('spot', 'usdm') then
        return jsonb_build_object('action', 'ignored', 'reason', 'invalid_market');
    end if;

    insert into public.workflow_schedules
        (workflow_type, signal_id, position_id, trader_id, symbol, interval, market, max_reanalyses)
    values (p_type, p_signal_id, p_position_id, p_trader_id, p_symbol, v_interval, v_market,
            p_max_reanalyses)
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
                              'symbol', p_symbol, 'interval', v_interval, 'market', v_market);
end
$$;

-- The fan-out's query: active workflows of (market, symbol, interval) that have not
-- claimed this candle yet. The old (symbol, interval, candle_time) signature is gone, so
-- a caller that does not say which market it serves fails loudly instead of matching both.
drop function if exists public.workflows_for_candle(text, text, timestamptz);

create or replace function public.workflows_for_candle(
    p_market text, p_symbol text, p_interval text, p_candle_time timestamptz)
returns table (workflow_id uuid, workflow_type text)
language sql stable
set search_path = ''
as $$
    select w.id, w.workflow_type
      from public.workflow_schedules w
     where w.is_active and w.market = p_market and w.symbol = p_symbol and w.interval = p_interval
       and (w.last_candle_time is null or w.last_candle_time < p_candle_time)
     order by w.created_at, w.id
$$;

revoke all on function public._insert_workflow(text, uuid, uuid, uuid, text, boolean, integer)
    from public, anon, authenticated;
grant execute on function public._insert_workflow(text, uuid, uuid, uuid, text, boolean, integer)
    to service_role;
revoke all on function public.workflows_for_candle(text, text, text, timestamptz)
    from public, anon, authenticated;
grant execute on function public.workflows_for_candle(text, text, text, timestamptz) to service_role;
