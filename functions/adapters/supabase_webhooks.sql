-- cmon's Supabase database webhooks, with the secret in Supabase Vault (applied by
-- `cmon db install-webhooks`, which first stores the secret in Vault and sets the
-- three transaction-local settings read below; psql works too:
--   begin; set local cmon.webhook_url = 'https://…/webhooks/supabase';
--   set local cmon.webhook_timeout_ms = '5000'; set local cmon.webhook_secret_name = 'cmon_webhook_secret';
--   \i functions/adapters/supabase_webhooks.sql
--   commit;
--
-- The trigger function sends exactly what Supabase's `supabase_functions.http_request`
-- sends for a POST webhook -- the same body (`jsonb_build_object(old_record, record,
-- type, table, schema)`) and the same trigger-configured headers, through the same
-- `net.http_post` -- but reads the secret from `vault.decrypted_secrets` at send time.
-- The trigger's arguments carry only the URL, the timeout and the secret's *name*: no
-- role that reads pg_trigger or pg_proc sees the secret, and rotating it
-- (`vault.update_secret`) takes effect on the next row without touching the triggers.
--
-- The triggers keep the names of infra/supabase_webhooks.sql (the dashboard path), so
-- installing either replaces the other: never both sending.

do $guard$
begin
    if to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)') is null then
        raise exception 'net.http_post is missing: enable the pg_net extension (Database -> Extensions)';
    end if;
    if to_regclass('vault.decrypted_secrets') is null then
        raise exception 'vault.decrypted_secrets is missing: enable Supabase Vault (supabase_vault)';
    end if;
    if coalesce(current_setting('cmon.webhook_url', true), '') !~ '^https?://[^/\s]+' then
        raise exception 'set cmon.webhook_url to the API''s webhook URL first';
    end if;
    if coalesce(current_setting('cmon.webhook_timeout_ms', true), '') !~ '^\d+$'
       or current_setting('cmon.webhook_timeout_ms')::integer not between 1000 and 10000 then
        raise exception 'cmon.webhook_timeout_ms must be 1000..10000 (the dashboard''s range)';
    end if;
end
$guard$;

create schema if not exists cmon_webhooks;
revoke all on schema cmon_webhooks from public;

create or replace function cmon_webhooks.http_request()
returns trigger
language plpgsql
-- Definer (the installing owner, e.g. postgres): the writer's role never needs, or
-- gets, read access to Vault.
security definer
set search_path = ''
as $$
declare
    v_url        text    := TG_ARGV[0];
    v_timeout_ms integer := TG_ARGV[1]::integer;
    v_secret     text;
    v_payload    jsonb;
begin
    select s.decrypted_secret into v_secret
    from vault.decrypted_secrets s
    where s.name = TG_ARGV[2];
    if v_secret is null then
        -- Never fail the writer's transaction over a webhook: the reconciler repairs a
        -- lost one, as it does for pg_net's own failures.
        raise warning 'cmon webhook not sent: no Vault secret named % (cmon db install-webhooks)', TG_ARGV[2];
        return null;
    end if;
    -- Verbatim from supabase_functions.http_request (supabase/postgres).
    v_payload := jsonb_build_object(
        'old_record', OLD,
        'record', NEW,
        'type', TG_OP,
        'table', TG_TABLE_NAME,
        'schema', TG_TABLE_SCHEMA
    );
    perform net.http_post(
        v_url,
        v_payload,
        '{}'::jsonb,
        jsonb_build_object('Content-type', 'application/json', 'x-supabase-webhook-source', v_secret),
        v_timeout_ms
    );
    return null;
end
$$;
revoke all on function cmon_webhooks.http_request() from public;

do $install$
declare
    v_args text := format(
        '%L, %L, %L',
        current_setting('cmon.webhook_url'),
        current_setting('cmon.webhook_timeout_ms'),
        coalesce(nullif(current_setting('cmon.webhook_secret_name', true), ''), 'cmon_webhook_secret')
    );
begin
    -- A `wait` analysis starts setup monitoring (the API ignores other decisions).
    drop trigger if exists cmon_signal_analyses_webhook on public.signal_analyses;
    execute format('create trigger cmon_signal_analyses_webhook after insert on public.signal_analyses '
                   'for each row execute function cmon_webhooks.http_request(%s)', v_args);
    -- An open position starts position management; closed or deleted stops it.
    drop trigger if exists cmon_positions_webhook on public.positions;
    execute format('create trigger cmon_positions_webhook after insert or update or delete on public.positions '
                   'for each row execute function cmon_webhooks.http_request(%s)', v_args);
    -- A new signal of a trader with auto_analyze_signals queues its initial analysis.
    drop trigger if exists cmon_signals_webhook on public.signals;
    execute format('create trigger cmon_signals_webhook after insert on public.signals '
                   'for each row execute function cmon_webhooks.http_request(%s)', v_args);
end
$install$;
