-- Local bootstrap: the Supabase-only objects the migrations rely on, created
-- only where missing. On a real Supabase project every statement is a no-op;
-- on a plain Postgres (the embedded server, CI) it makes the very same
-- migrations apply. Not a migration: `cmon db migrate` runs it before them.

-- Roles are cluster-wide: two databases bootstrapped at once on one server (parallel test
-- workers on a shared Postgres 15) may both find a role missing, so a concurrent creation
-- is caught rather than checked for.
do $$
declare
    v_role text;
    v_options text;
begin
    for v_role, v_options in values ('anon', 'nologin noinherit'), ('authenticated', 'nologin noinherit'),
                                     ('service_role', 'nologin noinherit bypassrls')
    loop
        if not exists (select 1 from pg_roles where rolname = v_role) then
            begin
                execute format('create role %I %s', v_role, v_options);
            exception when duplicate_object or unique_violation then
                null;  -- created meanwhile by a concurrent bootstrap
            end;
        end if;
    end loop;
end
$$;

create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;
grant usage on schema public to anon, authenticated, service_role;

-- auth.uid() as Supabase defines it: the `sub` claim of the request's JWT.
do $$
begin
    if not exists (
        select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'auth' and p.proname = 'uid'
    ) then
        create function auth.uid() returns uuid
            language sql stable
            as $fn$
                select coalesce(
                    nullif(current_setting('request.jwt.claim.sub', true), ''),
                    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
                )::uuid
            $fn$;
        grant execute on function auth.uid() to anon, authenticated, service_role;
    end if;
end
$$;
