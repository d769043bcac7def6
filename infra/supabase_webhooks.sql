-- Supabase database webhooks -> the cmon API (POST /webhooks/supabase): the DASHBOARD path.
--
-- Prefer `cmon db install-webhooks --url URL` (README, "Webhooks, secret in Vault"): same
-- triggers (same names, so either replaces the other), same requests, but the secret is
-- read from Supabase Vault at send time instead of sitting in the trigger definition.
-- Use this file only if you want the triggers listed under Database -> Webhooks.
--
-- Placeholders (replace both before running; the guard below refuses to run otherwise):
--   <WEBHOOK_URL>     the stack output WebhookUrl, e.g.
--                     https://abc123.execute-api.ap-northeast-1.amazonaws.com/webhooks/supabase
--   <WEBHOOK_SECRET>  the WEBHOOK_SECRET key of the stage's Secrets Manager secret
--                     (AppSecretId, e.g. cmon/prod)
--
-- How to run:
--   1. Supabase dashboard -> Database -> Webhooks (Integrations -> Database Webhooks):
--      enable the integration once; it creates the `supabase_functions` schema, its
--      `http_request` trigger function and pg_net.
--   2. Fill the placeholders and run with the service role / postgres user:
--        URL=$(aws cloudformation describe-stacks --stack-name cmon-prod \
--              --query "Stacks[0].Outputs[?OutputKey=='WebhookUrl'].OutputValue" --output text)
--        SECRET=$(aws secretsmanager get-secret-value --secret-id cmon/prod \
--              --query SecretString --output text | python -c 'import json,sys; print(json.load(sys.stdin)["WEBHOOK_SECRET"])')
--        sed -e "s|<WEBHOOK_URL>|$URL|g" -e "s|<WEBHOOK_SECRET>|$SECRET|g" infra/supabase_webhooks.sql \
--          | psql "$DATABASE_URL" -v ON_ERROR_STOP=1
--      or paste the filled-in text into the SQL editor. Re-running replaces the triggers.
--   3. Check: the three triggers show under Database -> Webhooks; insert a test row and
--      look at `select * from net._http_response order by created desc limit 5`.
--
-- Facts that shape the API: pg_net sends after COMMIT, one request per row, never
-- retries, times out after the last argument (5000 ms: README, "Webhook timeout"), and may deliver out of order; the reconciler (every
-- minute) repairs whatever a lost webhook missed. The secret is stored in the trigger
-- definition (visible to roles that can read pg_trigger): rotate it by rotating the
-- secret, redeploying the stack and re-running this file.

do $guard$
begin
    if position('<' in '<WEBHOOK_URL>') = 1 or position('<' in '<WEBHOOK_SECRET>') = 1 then
        raise exception 'fill in <WEBHOOK_URL> and <WEBHOOK_SECRET> first (see the header)';
    end if;
    if to_regprocedure('supabase_functions.http_request()') is null then
        raise exception 'supabase_functions.http_request is missing: enable Database Webhooks first';
    end if;
end
$guard$;

begin;

-- A `wait` analysis starts setup monitoring (the API ignores other decisions).
drop trigger if exists cmon_signal_analyses_webhook on public.signal_analyses;
create trigger cmon_signal_analyses_webhook
    after insert on public.signal_analyses
    for each row
    execute function supabase_functions.http_request(
        '<WEBHOOK_URL>',
        'POST',
        '{"Content-type":"application/json","x-supabase-webhook-source":"<WEBHOOK_SECRET>"}',
        '{}',
        '5000'
    );

-- An open position starts position management; closed or deleted stops it.
drop trigger if exists cmon_positions_webhook on public.positions;
create trigger cmon_positions_webhook
    after insert or update or delete on public.positions
    for each row
    execute function supabase_functions.http_request(
        '<WEBHOOK_URL>',
        'POST',
        '{"Content-type":"application/json","x-supabase-webhook-source":"<WEBHOOK_SECRET>"}',
        '{}',
        '5000'
    );

-- A new signal of a trader with auto_analyze_signals queues its initial analysis.
drop trigger if exists cmon_signals_webhook on public.signals;
create trigger cmon_signals_webhook
    after insert on public.signals
    for each row
    execute function supabase_functions.http_request(
        '<WEBHOOK_URL>',
        'POST',
        '{"Content-type":"application/json","x-supabase-webhook-source":"<WEBHOOK_SECRET>"}',
        '{}',
        '5000'
    );

commit;
