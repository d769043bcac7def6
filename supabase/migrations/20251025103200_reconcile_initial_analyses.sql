-- Signals whose initial analysis was never queued because their INSERT webhook was
-- lost (pg_net never retries; an API cold start can exceed its 1 s timeout). Only
-- signals never claimed: one that was claimed and failed has its failure recorded and
-- is not retried behind the operator's back. Young signals are left to the webhook,
-- old ones are not worth analysing any more.
create or replace function public.signals_missing_initial_analysis(
    p_min_age_seconds integer default 60, p_max_age_seconds integer default 3600,
    p_limit integer default 200)
returns setof uuid
language sql stable
set search_path = ''
as $$
    select s.id
      from public.signals s
      join public.traders t on t.id = s.trader_id
     where s.status = 'new'
       and s.initial_claimed_at is null
       and t.auto_analyze_signals
       and s.created_at <= now() - make_interval(secs => p_min_age_seconds)
       and s.created_at >= now() - make_interval(secs => p_max_age_seconds)
       and not exists (select 1 from public.signal_analyses a
                        where a.signal_id = s.id and a.analysis_type = 'initial')
       and public.monitoring_allowed(t.user_id)
     order by s.created_at, s.id
     limit p_limit
$$;

revoke all on function public.signals_missing_initial_analysis(integer, integer, integer)
    from public, anon, authenticated;
grant execute on function public.signals_missing_initial_analysis(integer, integer, integer) to service_role;
