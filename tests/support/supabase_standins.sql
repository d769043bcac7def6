-- Test-only stand-ins for two Supabase pieces that cannot run here: pg_net's
-- `net.http_post` (records each call instead of sending it) and Supabase Vault
-- (`vault.secrets`, `vault.decrypted_secrets`, `vault.create_secret`,
-- `vault.update_secret`, with the real signatures; stored in clear, access as on
-- Supabase: only the owner). NEVER on a real Supabase project, where both exist.

create schema net;
create table net.calls (
    id                   bigserial primary key,
    url                  text not null,
    body                 jsonb,
    params               jsonb,
    headers              jsonb,
    timeout_milliseconds integer,
    called_by            name not null default current_user
);
-- pg_net 0.20's signature.
create function net.http_post(
    url text,
    body jsonb default '{}'::jsonb,
    params jsonb default '{}'::jsonb,
    headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
    timeout_milliseconds integer default 5000
) returns bigint language sql as $$
    insert into net.calls (url, body, params, headers, timeout_milliseconds)
    values (url, body, params, headers, timeout_milliseconds)
    returning id
$$;

create schema vault;
revoke all on schema vault from public;
create table vault.secrets (
    id          uuid primary key default gen_random_uuid(),
    name        text unique,
    description text not null default '',
    secret      text not null,
    updated_at  timestamptz not null default now()
);
create table vault.calls (id bigserial primary key, fn text not null, secret_id uuid, name text);
create view vault.decrypted_secrets as
    select id, name, description, secret, secret as decrypted_secret, updated_at from vault.secrets;
create function vault.create_secret(
    new_secret text, new_name text default null, new_description text default '', new_key_id uuid default null
) returns uuid language plpgsql as $$
declare v_id uuid;
begin
    insert into vault.secrets (name, description, secret) values (new_name, new_description, new_secret)
    returning id into v_id;
    insert into vault.calls (fn, secret_id, name) values ('create_secret', v_id, new_name);
    return v_id;
end $$;
create function vault.update_secret(
    secret_id uuid, new_secret text default null, new_name text default null,
    new_description text default null, new_key_id uuid default null
) returns void language plpgsql as $$
begin
    update vault.secrets s set secret = coalesce(new_secret, s.secret), name = coalesce(new_name, s.name),
        description = coalesce(new_description, s.description), updated_at = now()
    where s.id = update_secret.secret_id;
    insert into vault.calls (fn, secret_id, name) values ('update_secret', update_secret.secret_id, new_name);
end $$;
