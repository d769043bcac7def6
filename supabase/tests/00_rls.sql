-- Row-level security of every table (pgTAP; `supabase test db`, or pg_prove on a
-- migrated database: see README, Test). The catalog checks cover every table in
-- `public`, including tables added later; the behaviour checks seed two users and read
-- as each role. A new table needs nothing here unless it has its own read policy: then
-- add one row to `pg_temp.owned` below.
begin;
create schema if not exists extensions;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;
grant usage on schema extensions to anon, authenticated;  -- rolled back with the rest
select * from no_plan();

-- Catalog: RLS on everywhere, nothing writable or readable by anon, reads only.
select is_empty(
    $$ select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relrowsecurity $$,
    'every public table has row-level security enabled'
);
select is_empty(
    $$ select c.relname::text || ':' || r.rolname || ':' || p.priv
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
       cross join (values ('anon'), ('authenticated')) as r (rolname)
       cross join (values ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE')) as p (priv)
       where n.nspname = 'public' and c.relkind in ('r', 'p')
         and has_table_privilege(r.rolname, c.oid, p.priv) $$,
    'anon and authenticated can write no public table'
);
select is_empty(
    $$ select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm')
         and has_table_privilege('anon', c.oid, 'SELECT') $$,
    'anon can read no public table or view'
);
select is_empty(
    $$ select tablename::text || '.' || policyname from pg_policies
       where schemaname = 'public' and (cmd <> 'SELECT' or roles && array['anon', 'public']::name[]) $$,
    'every policy is a SELECT policy for signed-in roles only'
);

-- Behaviour: two users, each with a trader, signal, analysis, position, workflow,
-- error and notification. As A, every owned table shows exactly A's row.
insert into public.user_profiles (id, email, subscription_tier) values
    ('00000000-0000-4000-8000-00000000000a', 'a@example.test', 'elite'),
    ('00000000-0000-4000-8000-00000000000b', 'b@example.test', 'elite');
insert into public.traders (id, user_id, name) values
    ('00000000-0000-4000-8000-0000000000a1', '00000000-0000-4000-8000-00000000000a', 'A'),
    ('00000000-0000-4000-8000-0000000000b1', '00000000-0000-4000-8000-00000000000b', 'B');
insert into public.signals (id, trader_id, symbol) values
    ('00000000-0000-4000-8000-0000000000a2', '00000000-0000-4000-8000-0000000000a1', 'BTCUSDT'),
    ('00000000-0000-4000-8000-0000000000b2', '00000000-0000-4000-8000-0000000000b1', 'BTCUSDT');
insert into public.signal_analyses (signal_id, decision, confidence, reasoning, analysis_type) values
    ('00000000-0000-4000-8000-0000000000a2', 'wait', 0.5, 'a', 'initial'),
    ('00000000-0000-4000-8000-0000000000b2', 'wait', 0.5, 'b', 'initial');
insert into public.positions (id, trader_id, symbol, side, entry_price, contracts) values
    ('00000000-0000-4000-8000-0000000000a3', '00000000-0000-4000-8000-0000000000a1', 'ETHUSDT', 'long', 100, 1),
    ('00000000-0000-4000-8000-0000000000b3', '00000000-0000-4000-8000-0000000000b1', 'ETHUSDT', 'long', 100, 1);
select public.register_position_management('00000000-0000-4000-8000-0000000000a3', false);
select public.register_position_management('00000000-0000-4000-8000-0000000000b3', false);
insert into public.workflow_errors (workflow_id, error_kind, message)
    select id, 'llm_unavailable', 'test' from public.workflow_schedules;
insert into public.notifications (user_id, kind, title) values
    ('00000000-0000-4000-8000-00000000000a', 'test', 'a'),
    ('00000000-0000-4000-8000-00000000000b', 'test', 'b');

-- Rows of each table visible to the current role; -1 when it may not read the table.
create function pg_temp.visible(p_table text) returns bigint language plpgsql as $$
declare n bigint;
begin
    execute format('select count(*) from public.%I', p_table) into n;
    return n;
exception when insufficient_privilege then
    return -1;
end $$;
grant execute on function pg_temp.visible(text) to anon, authenticated;

-- Tables whose rows belong to a user (one seeded row per user above).
create table pg_temp.owned (table_name text primary key);
insert into pg_temp.owned values ('user_profiles'), ('traders'), ('signals'), ('signal_analyses'),
    ('positions'), ('workflow_schedules'), ('workflow_errors'), ('notifications');
grant select on pg_temp.owned to anon, authenticated;
create table pg_temp.all_tables as
    select c.relname::text as table_name from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relkind in ('r', 'p');
grant select on pg_temp.all_tables to anon, authenticated;

set local role anon;
select is_empty(
    $$ select table_name from pg_temp.all_tables where pg_temp.visible(table_name) > 0 $$,
    'anon reads no row of any table'
);
reset role;

set local role authenticated;
set local request.jwt.claims = '{"sub": "00000000-0000-4000-8000-00000000000a", "role": "authenticated"}';
select results_eq(
    $$ select table_name, pg_temp.visible(table_name) from pg_temp.owned order by 1 $$,
    $$ select table_name, 1::bigint from pg_temp.owned order by 1 $$,
    'a signed-in user reads exactly their own row of every owned table'
);
select is(
    (select count(*) from public.signals where trader_id = '00000000-0000-4000-8000-0000000000b1'),
    0::bigint, 'another user''s signal is invisible'
);
select is_empty(
    $$ select table_name from pg_temp.all_tables
       where table_name not in (select table_name from pg_temp.owned) and pg_temp.visible(table_name) > 0 $$,
    'a signed-in user reads nothing of the tables that belong to nobody (rollout_settings ...)'
);
select throws_ok(
    $$ insert into public.signals (trader_id, symbol)
       values ('00000000-0000-4000-8000-0000000000a1', 'ETHUSDT') $$,
    '42501', null, 'a signed-in user cannot insert even their own signal'
);
reset role;

set local role authenticated;
set local request.jwt.claims = '';
select is(pg_temp.visible('signals'), 0::bigint, 'authenticated without a user id reads nothing');
reset role;

select * from finish();
rollback;
