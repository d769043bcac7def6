-- The claim reads the user's cap before the day's ledger: with no cap (the default, 0)
-- it used to sum every llm_calls row of the user's UTC day on every claim anyway, a
-- cost that grows through the day with the user's workflows (a user with 10 workflows
-- on 1m candles books ~14,000 rows a day). The cap rule moves to `user_token_cap`, the
-- one place it lives; `user_token_budget` and `_token_cap_refusal` both read it.

-- The user's daily token cap: the tier's own (daily_token_cap_by_tier), else the global
-- daily_token_cap; 0 means no cap.
create or replace function public.user_token_cap(p_user_id uuid)
returns bigint
language sql stable
set search_path = ''
as $$
    select coalesce((
        select coalesce(nullif(r.daily_token_cap_by_tier ->> u.subscription_tier, '')::bigint,
                        r.daily_token_cap)
          from public.rollout_settings r
          left join public.user_profiles u on u.id = p_user_id
         where r.id), 0)
$$;

-- The user's cap and tokens spent on the current UTC day of cmon_now().
create or replace function public.user_token_budget(p_user_id uuid)
returns jsonb
language sql stable
set search_path = ''
as $$
    select jsonb_build_object(
        'cap', public.user_token_cap(p_user_id),
        'tokens_today', (
            select coalesce(sum(c.total_tokens), 0)
              from public.llm_calls c
             where c.user_id = p_user_id
               and c.created_at >= (date_trunc('day', public.cmon_now() at time zone 'UTC') at time zone 'UTC')),
        'day', to_char(public.cmon_now() at time zone 'UTC', 'YYYY-MM-DD'))
$$;

-- Refuse a job of a user at or over the cap (null when under it or uncapped): the refusal
-- writes the day's one token_cap_reached notification for the user. An uncapped user
-- costs one read of rollout_settings, never the ledger.
create or replace function public._token_cap_refusal(p_user_id uuid, p_workflow_id uuid)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_budget jsonb;
begin
    if p_user_id is null or public.user_token_cap(p_user_id) <= 0 then
        return null;
    end if;
    v_budget := public.user_token_budget(p_user_id);
    if (v_budget ->> 'tokens_today')::bigint < (v_budget ->> 'cap')::bigint then
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

-- Only the service role (the backend) calls it, as the functions it serves.
revoke all on function public.user_token_cap(uuid) from public, anon, authenticated;
grant execute on function public.user_token_cap(uuid) to service_role;
