-- What the operator reads from the ledger: the share of users the rollout admits (the
-- token projection scales with it) and the ledger's window summary, including the brief's
-- "duplicate candle processing": llm-proxy calls for a (workflow, candle), or a signal's
-- initial analysis, that already had one (a claim taken over after its lease while the
-- first worker was still waiting for its answer, say). Zero unless something paid twice.

-- Share (0..1) of users that monitoring_allowed admits right now; 1 when there are no
-- users yet, so a fresh stage compares against the whole projection.
create or replace function public.rollout_admitted_share()
returns numeric
language sql stable
set search_path = ''
as $$
    select coalesce(round(avg(case when public.monitoring_allowed(u.id) then 1 else 0 end), 4), 1)
      from public.user_profiles u
$$;

create or replace function public.llm_ledger_summary(p_since timestamptz)
returns jsonb
language sql stable
set search_path = ''
as $$
    with w as (
        select * from public.llm_calls c where c.created_at >= p_since
    )
    select jsonb_build_object(
        'calls', (select count(*) from w),
        'answers_recorded', (select count(*) from w where outcome = 'ok'),
        'prompt_tokens', (select coalesce(sum(prompt_tokens), 0) from w),
        'completion_tokens', (select coalesce(sum(completion_tokens), 0) from w),
        'total_tokens', (select coalesce(sum(total_tokens), 0) from w),
        'avg_latency_ms', (select round(avg(latency_ms), 1) from w where latency_ms is not null),
        'by_outcome', coalesce((select jsonb_object_agg(outcome, n)
                                  from (select outcome, count(*) as n from w group by outcome) o), '{}'),
        'duplicate_calls', (
            select count(*) from w c
             where exists (
                 select 1 from public.llm_calls p
                  where p.id <> c.id and (p.created_at, p.id) < (c.created_at, c.id)
                    and ((c.workflow_id is not null and c.candle_time is not null
                          and p.workflow_id = c.workflow_id and p.candle_time = c.candle_time)
                      or (c.analysis_type = 'initial' and p.analysis_type = 'initial'
                          and p.signal_id = c.signal_id)))),
        'users_at_cap_today', (
            select count(*) from public.notifications n
             where n.kind = 'token_cap_reached'
               and n.payload ->> 'day' = to_char(public.cmon_now() at time zone 'UTC', 'YYYY-MM-DD')))
$$;

create index if not exists llm_calls_initial_signal_idx
    on public.llm_calls (signal_id) where analysis_type = 'initial';

revoke all on function public.rollout_admitted_share() from public, anon, authenticated;
grant execute on function public.rollout_admitted_share() to service_role;
revoke all on function public.llm_ledger_summary(timestamptz) from public, anon, authenticated;
grant execute on function public.llm_ledger_summary(timestamptz) to service_role;
