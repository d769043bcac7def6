-- Local stand-in for the Supabase database webhooks (cmon local / cmon demo only).
--
-- On Supabase, a database webhook is an AFTER trigger that calls
-- supabase_functions.http_request, which POSTs (through pg_net, after COMMIT)
-- the body built below. Here the same body goes out with pg_notify instead, and
-- functions/local/relay.py POSTs it to the API. NOTIFY is delivered only when the
-- transaction commits, in commit order, so the relay sees exactly what pg_net
-- would send, never a row that was rolled back.
--
-- NEVER run this on a real Supabase project: it has its own webhooks. The relay
-- installs it only on a local database (see relay.install).
--
-- Idempotent: re-running replaces the function and the triggers.

create schema if not exists cmon_local;

-- NOTIFY payloads are capped at 8000 bytes; a larger body (a long LLM reasoning)
-- is parked here and the notification carries only its id, so a big row never
-- makes the writer's transaction fail.
create table if not exists cmon_local.webhook_overflow (
    id         bigserial primary key,
    body       jsonb not null,
    created_at timestamptz not null default now()
);

create or replace function cmon_local.notify_webhook()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
    v_body jsonb;
    v_text text;
    v_id   bigint;
begin
    -- Verbatim from supabase_functions.http_request (supabase/postgres).
    v_body := jsonb_build_object(
        'old_record', OLD,
        'record', NEW,
        'type', TG_OP,
        'table', TG_TABLE_NAME,
        'schema', TG_TABLE_SCHEMA
    );
    v_text := v_body::text;
    if octet_length(v_text) > 7900 then
        insert into cmon_local.webhook_overflow (body) values (v_body) returning id into v_id;
        v_text := jsonb_build_object('cmon_overflow_id', v_id)::text;
    end if;
    perform pg_notify('cmon_webhooks', v_text);
    return null;
end
$$;

-- The three webhooks the platform configures (see ARCHITECTURE.md, "The data path").
drop trigger if exists cmon_local_webhook on public.signal_analyses;
create trigger cmon_local_webhook
    after insert on public.signal_analyses
    for each row execute function cmon_local.notify_webhook();

drop trigger if exists cmon_local_webhook on public.positions;
create trigger cmon_local_webhook
    after insert or update or delete on public.positions
    for each row execute function cmon_local.notify_webhook();

drop trigger if exists cmon_local_webhook on public.signals;
create trigger cmon_local_webhook
    after insert on public.signals
    for each row execute function cmon_local.notify_webhook();
