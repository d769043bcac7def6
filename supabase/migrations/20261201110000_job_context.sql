-- A job's prompt context in one SQL function per workflow kind: one round trip and one
-- consistent snapshot (issue 11, item 6). Before, the worker read the workflow, the
-- signal, the trader and the history in four statements and four transactions, so a row
-- changed between two reads could give the LLM a context that never existed.
--
-- The prompt sent to llm-proxy stays byte-identical to what the Python reads built:
-- - the functions return `json`, not `jsonb`: jsonb reorders an object's keys (by length,
--   then bytes), json keeps the table's column order, which is the prompt's key order;
-- - `numeric` travels as its text (`0.00150000`, the scale kept), as Python's
--   `format(Decimal, 'f')` wrote it, never as a JSON number (a float on the way in);
-- - `timestamptz` is written as Python's `datetime.isoformat()` wrote it, in the session's
--   time zone (what psycopg converts to): `2025-10-25T10:29:59.999000+00:00`, no fraction
--   when the microseconds are zero, `+HH:MM[:SS]` offsets;
-- - everything else (uuid, text, boolean, integer, jsonb) is its JSON value.
-- tests/functional/test_job_context.py compares the request bodies built from the old
-- reads and from these functions over the same rows.
--
-- Both functions are one `select` and `stable`, so every row they read comes from the
-- snapshot of the calling statement. Called by the service role (which bypasses RLS)
-- only; not security definer, like the other functions the workers call.

-- A table row (as `to_jsonb(row)`) as the prompt carries it: the columns `p_columns`
-- (null: all of them, in table order) in that order, formatted as described above.
-- Generic over the table, so a column added to `signals` or `positions` later is in the
-- prompt as it was with `select *`.
create or replace function public._prompt_row(p_table regclass, p_row jsonb, p_columns text[] default null)
returns json
language sql stable
set search_path = ''
as $$
    select coalesce(
        pg_catalog.json_object_agg(
            a.attname,
            case
                when pg_catalog.jsonb_typeof(p_row -> a.attname::text) is null
                  or pg_catalog.jsonb_typeof(p_row -> a.attname::text) = 'null' then 'null'::json
                when a.atttypid = 'pg_catalog.numeric'::pg_catalog.regtype
                    then pg_catalog.to_json(p_row ->> a.attname::text)
                when a.atttypid = 'pg_catalog.timestamptz'::pg_catalog.regtype
                    then pg_catalog.to_json(
                        pg_catalog.to_char(ts.v, 'YYYY-MM-DD"T"HH24:MI:SS')
                        || case when pg_catalog.to_char(ts.v, 'US') <> '000000'
                                then pg_catalog.to_char(ts.v, '.US') else '' end
                        || case when ts.off < 0 then '-' else '+' end
                        || pg_catalog.lpad((abs(ts.off) / 3600)::text, 2, '0') || ':'
                        || pg_catalog.lpad((abs(ts.off) % 3600 / 60)::text, 2, '0')
                        || case when abs(ts.off) % 60 <> 0
                                then ':' || pg_catalog.lpad((abs(ts.off) % 60)::text, 2, '0') else '' end)
                else (p_row -> a.attname::text)::json
            end
            order by coalesce(pg_catalog.array_position(p_columns, a.attname::text), a.attnum)
        ),
        '{}'::json)
      from pg_catalog.pg_attribute a
      cross join lateral (
          select t.v, pg_catalog.date_part('timezone', t.v)::integer as off
            from (select case when a.atttypid = 'pg_catalog.timestamptz'::pg_catalog.regtype
                              then (p_row ->> a.attname::text)::timestamptz end as v) t
      ) ts
     where a.attrelid = p_table and a.attnum > 0 and not a.attisdropped
       and (p_columns is null or a.attname::text = any (p_columns))
$$;

-- The setup-analysis prompt: the signal (every column), its trader, its newest
-- `p_history` analyses (newest first). By workflow (a monitoring job: the workflow's own
-- signal) or by signal (an initial analysis). Unknown workflow or signal: P0002.
create or replace function public.setup_job_context(
    p_workflow_id uuid default null,
    p_signal_id   uuid default null,
    p_history     integer default 5
)
returns json
language plpgsql stable
set search_path = ''
as $$
declare
    v_workflow_found boolean;
    v_signal_id      uuid;
    v_context        json;
begin
    select w.id is not null,
           s.id,
           pg_catalog.json_build_object(
               'signal', public._prompt_row('public.signals', pg_catalog.to_jsonb(s)),
               'trader', coalesce(public._prompt_row('public.traders', pg_catalog.to_jsonb(t),
                                      array['id', 'user_id', 'name', 'auto_analyze_signals', 'filter']),
                                  '{}'::json),
               'previous_analyses', (
                   select coalesce(pg_catalog.json_agg(
                              public._prompt_row('public.signal_analyses', pg_catalog.to_jsonb(a),
                                  array['decision', 'confidence', 'reasoning', 'analysis_type',
                                        'candle_time', 'created_at'])
                              order by a.created_at desc, a.id desc), '[]'::json)
                     from (select * from public.signal_analyses x
                            where x.signal_id = s.id
                            order by x.created_at desc, x.id desc
                            limit p_history) a))
      into v_workflow_found, v_signal_id, v_context
      from (select 1) one
      left join public.workflow_schedules w on w.id = p_workflow_id
      left join public.signals s
             on s.id = case when p_workflow_id is not null then w.signal_id else p_signal_id end
      left join public.traders t on t.id = s.trader_id;

    if p_workflow_id is not null and not v_workflow_found then
        raise exception 'workflow % not found', p_workflow_id using errcode = 'P0002';
    end if;
    if v_signal_id is null then
        raise exception 'signal % not found', coalesce(p_signal_id::text, 'of workflow ' || p_workflow_id)
              using errcode = 'P0002';
    end if;
    return v_context;
end
$$;

-- The position-management prompt: the position (every column) of a position workflow,
-- its trader, and its newest `p_history` management decisions (newest first). Unknown
-- workflow (or one without a position): P0002.
create or replace function public.position_job_context(p_workflow_id uuid, p_history integer default 5)
returns json
language plpgsql stable
set search_path = ''
as $$
declare
    v_context json;
begin
    select pg_catalog.json_build_object(
               'workflow_id', w.id,
               'trader_id', p.trader_id,
               'position', public._prompt_row('public.positions', pg_catalog.to_jsonb(p)),
               'recent_decisions', (
                   select coalesce(pg_catalog.json_agg(
                              public._prompt_row('public.management_decisions', pg_catalog.to_jsonb(d),
                                  array['candle_time', 'action', 'params', 'status', 'rejection_reason',
                                        'price', 'reasoning'])
                              order by d.candle_time desc), '[]'::json)
                     from (select * from public.management_decisions x
                            where x.position_id = p.id
                            order by x.candle_time desc
                            limit p_history) d))
      into v_context
      from public.workflow_schedules w
      join public.positions p on p.id = w.position_id
     where w.id = p_workflow_id;

    if v_context is null then
        raise exception 'position workflow % not found', p_workflow_id using errcode = 'P0002';
    end if;
    return v_context;
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
           and p.proname in ('_prompt_row', 'setup_job_context', 'position_job_context')
    loop
        execute format('revoke all on function %s from public, anon, authenticated', v_fn.sig);
        execute format('grant execute on function %s to service_role', v_fn.sig);
    end loop;
end
$$;
