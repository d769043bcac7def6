-- Continuous monitoring: tables, keys and row-level security.
--
-- The unique keys below are the invariants the whole system leans on: an
-- at-least-once bus may deliver a candle twice, late or out of order, and the
-- database still holds at most one workflow per entity and one analysis or
-- management decision per (entity, candle). Money and prices are numeric.

create table if not exists public.user_profiles (
    id                uuid primary key,
    email             text,
    subscription_tier text not null default 'free'
                      check (subscription_tier in ('free', 'pro', 'elite')),
    created_at        timestamptz not null default now()
);

create table if not exists public.traders (
    id                   uuid primary key default gen_random_uuid(),
    user_id              uuid not null references public.user_profiles (id) on delete cascade,
    name                 text not null default '',
    auto_analyze_signals boolean not null default false,
    -- filter->>'interval' is the candle interval the trader's signals are watched on.
    filter               jsonb not null default '{}'::jsonb,
    created_at           timestamptz not null default now()
);
create index if not exists traders_user_id_idx on public.traders (user_id);

create table if not exists public.signals (
    id                 uuid primary key default gen_random_uuid(),
    trader_id          uuid not null references public.traders (id) on delete cascade,
    symbol             text not null check (symbol ~ '^[A-Z0-9]{2,32}$'),
    -- new -> monitoring (a wait) -> entered (a position opened) | expired (bad setup or max reached)
    status             text not null default 'new'
                       check (status in ('new', 'monitoring', 'entered', 'expired', 'cancelled')),
    -- Lease of the initial analysis, so two deliveries of its job call the LLM once.
    initial_claimed_at timestamptz,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now()
);
create index if not exists signals_trader_id_idx on public.signals (trader_id);

create table if not exists public.positions (
    id                uuid primary key default gen_random_uuid(),
    trader_id         uuid not null references public.traders (id) on delete cascade,
    signal_id         uuid references public.signals (id) on delete set null,
    symbol            text not null check (symbol ~ '^[A-Z0-9]{2,32}$'),
    side              text not null check (side in ('long', 'short')),
    entry_price       numeric not null check (entry_price > 0),
    contracts         numeric not null check (contracts > 0),
    initial_contracts numeric check (initial_contracts > 0),
    stop_loss         numeric check (stop_loss > 0),
    take_profit       numeric check (take_profit > 0),
    status            text not null default 'open' check (status in ('open', 'closed')),
    exit_price        numeric check (exit_price > 0),
    realized_pnl      numeric not null default 0,
    close_reason      text,
    -- Bumped by every applied change: a decision computed on an older version is rejected.
    version           integer not null default 0,
    opened_at         timestamptz not null default now(),
    closed_at         timestamptz,
    updated_at        timestamptz not null default now()
);
create index if not exists positions_trader_id_idx on public.positions (trader_id);

-- Any change to what a decision is judged against bumps `version`, whoever makes it
-- (the platform, the UI, a decision), so a decision computed on an older snapshot is
-- rejected as position_changed instead of applied to a position it never saw.
create or replace function public._bump_position_version()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if (new.side, new.entry_price, new.contracts, new.stop_loss, new.take_profit, new.status)
       is distinct from (old.side, old.entry_price, old.contracts, old.stop_loss, old.take_profit, old.status)
    then
        new.version := old.version + 1;
    else
        new.version := old.version;
    end if;
    return new;
end
$$;
create trigger positions_bump_version before update on public.positions
    for each row execute function public._bump_position_version();
-- An enter_trade opens at most one position per signal, however often it is delivered.
create unique index if not exists positions_one_per_signal
    on public.positions (signal_id) where signal_id is not null;

create table if not exists public.workflow_schedules (
    id                         uuid primary key default gen_random_uuid(),
    workflow_type              text not null
                               check (workflow_type in ('setup_monitoring', 'position_management')),
    signal_id                  uuid references public.signals (id) on delete cascade,
    position_id                uuid references public.positions (id) on delete cascade,
    trader_id                  uuid not null references public.traders (id) on delete cascade,
    symbol                     text not null,
    interval                   text not null,
    is_active                  boolean not null default true,
    -- Newest candle claimed (close time). A claim only ever moves it forward.
    last_candle_time           timestamptz,
    claimed_at                 timestamptz,
    -- Newest candle whose outcome (analysis, decision or failure) is recorded.
    last_completed_candle_time timestamptz,
    reanalysis_count           integer not null default 0,
    max_reanalyses             integer check (max_reanalyses > 0),
    consecutive_errors         integer not null default 0,
    last_error                 text,
    last_error_at              timestamptz,
    stopped_reason             text,
    stopped_at                 timestamptz,
    created_at                 timestamptz not null default now(),
    updated_at                 timestamptz not null default now(),
    constraint workflow_entity check (
        (workflow_type = 'setup_monitoring' and signal_id is not null and position_id is null)
        or (workflow_type = 'position_management' and position_id is not null)
    ),
    constraint workflow_stop_has_reason check (is_active or stopped_reason is not null)
);
-- At most one workflow per (type, entity), even if two webhooks race.
create unique index if not exists workflow_one_per_signal
    on public.workflow_schedules (signal_id) where workflow_type = 'setup_monitoring';
create unique index if not exists workflow_one_per_position
    on public.workflow_schedules (position_id) where workflow_type = 'position_management';
-- The fan-out's hot query: active workflows of one (symbol, interval).
create index if not exists workflow_active_by_stream
    on public.workflow_schedules (symbol, interval)
    include (workflow_type, last_candle_time) where is_active;
create index if not exists workflow_trader_id_idx on public.workflow_schedules (trader_id);

create table if not exists public.signal_analyses (
    id                uuid primary key default gen_random_uuid(),
    signal_id         uuid not null references public.signals (id) on delete cascade,
    workflow_id       uuid references public.workflow_schedules (id) on delete set null,
    decision          text not null check (decision in ('enter_trade', 'bad_setup', 'wait')),
    confidence        numeric(5, 4) check (confidence between 0 and 1),
    reasoning         text not null default '',
    trade_plan        jsonb,
    analysis_type     text not null default 'initial'
                      check (analysis_type in ('initial', 'monitoring')),
    -- Close time of the candle analysed; null for the initial analysis.
    candle_time       timestamptz,
    prompt_tokens     integer not null default 0 check (prompt_tokens >= 0),
    completion_tokens integer not null default 0 check (completion_tokens >= 0),
    total_tokens      integer not null default 0 check (total_tokens >= 0),
    latency_ms        integer check (latency_ms >= 0),
    model             text,
    trace_id          text,
    created_at        timestamptz not null default now(),
    constraint analysis_candle_matches_type check ((analysis_type = 'monitoring') = (candle_time is not null))
);
-- One analysis per (signal, candle), and one initial analysis per signal.
create unique index if not exists signal_analyses_one_per_candle
    on public.signal_analyses (signal_id, candle_time);
create unique index if not exists signal_analyses_one_initial
    on public.signal_analyses (signal_id) where analysis_type = 'initial';
create index if not exists signal_analyses_signal_created_idx
    on public.signal_analyses (signal_id, created_at desc);

create table if not exists public.management_decisions (
    id                uuid primary key default gen_random_uuid(),
    position_id       uuid not null references public.positions (id) on delete cascade,
    workflow_id       uuid references public.workflow_schedules (id) on delete set null,
    candle_time       timestamptz not null,
    -- What was asked for, verbatim (an unknown action is kept and rejected).
    action            text not null,
    params            jsonb not null default '{}'::jsonb,
    -- llm: the model's decision; paper: a stop-loss/take-profit crossed by the candle.
    source            text not null default 'llm' check (source in ('llm', 'paper')),
    status            text not null check (status in ('applied', 'rejected')),
    rejection_reason  text,
    price             numeric check (price > 0),
    before_state      jsonb,
    after_state       jsonb,
    realized_pnl      numeric,
    confidence        numeric(5, 4) check (confidence between 0 and 1),
    reasoning         text not null default '',
    prompt_tokens     integer not null default 0 check (prompt_tokens >= 0),
    completion_tokens integer not null default 0 check (completion_tokens >= 0),
    total_tokens      integer not null default 0 check (total_tokens >= 0),
    latency_ms        integer check (latency_ms >= 0),
    model             text,
    trace_id          text,
    created_at        timestamptz not null default now(),
    constraint decision_rejection_has_reason check ((status = 'rejected') = (rejection_reason is not null)),
    -- One management decision per (position, candle).
    constraint management_decisions_one_per_candle unique (position_id, candle_time)
);

create table if not exists public.workflow_errors (
    id          uuid primary key default gen_random_uuid(),
    workflow_id uuid references public.workflow_schedules (id) on delete cascade,
    signal_id   uuid references public.signals (id) on delete cascade,
    candle_time timestamptz,
    error_kind  text not null,
    message     text not null,
    created_at  timestamptz not null default now(),
    constraint error_has_subject check (workflow_id is not null or signal_id is not null)
);
create index if not exists workflow_errors_workflow_idx on public.workflow_errors (workflow_id, created_at desc);

create table if not exists public.notifications (
    id          uuid primary key default gen_random_uuid(),
    user_id     uuid not null references public.user_profiles (id) on delete cascade,
    workflow_id uuid references public.workflow_schedules (id) on delete set null,
    kind        text not null,
    title       text not null,
    body        text not null default '',
    payload     jsonb not null default '{}'::jsonb,
    read_at     timestamptz,
    created_at  timestamptz not null default now()
);
create index if not exists notifications_user_idx on public.notifications (user_id, created_at desc);
-- A workflow is auto-disabled once, so its user is told once.
create unique index if not exists notifications_one_disable_per_workflow
    on public.notifications (workflow_id) where kind = 'workflow_disabled';

-- The rollout gate (a single row): who gets new workflows registered.
create table if not exists public.rollout_settings (
    id             boolean primary key default true check (id),
    enabled        boolean not null default true,
    percent        integer not null default 100 check (percent between 0 and 100),
    -- null = every tier; otherwise only these subscription tiers.
    tiers          text[],
    allow_user_ids uuid[] not null default '{}',
    deny_user_ids  uuid[] not null default '{}',
    updated_at     timestamptz not null default now(),
    updated_by     text
);
insert into public.rollout_settings (id) values (true) on conflict (id) do nothing;

-- Row-level security: a signed-in user reads only their own rows; only the
-- service role (which bypasses RLS) writes.
alter table public.user_profiles        enable row level security;
alter table public.traders              enable row level security;
alter table public.signals              enable row level security;
alter table public.positions            enable row level security;
alter table public.workflow_schedules   enable row level security;
alter table public.signal_analyses      enable row level security;
alter table public.management_decisions enable row level security;
alter table public.workflow_errors      enable row level security;
alter table public.notifications        enable row level security;
alter table public.rollout_settings     enable row level security;

create policy user_profiles_read_own on public.user_profiles
    for select to authenticated using (id = (select auth.uid()));
create policy traders_read_own on public.traders
    for select to authenticated using (user_id = (select auth.uid()));
create policy signals_read_own on public.signals
    for select to authenticated using (exists (
        select 1 from public.traders t where t.id = trader_id and t.user_id = (select auth.uid())));
create policy positions_read_own on public.positions
    for select to authenticated using (exists (
        select 1 from public.traders t where t.id = trader_id and t.user_id = (select auth.uid())));
create policy workflow_schedules_read_own on public.workflow_schedules
    for select to authenticated using (exists (
        select 1 from public.traders t where t.id = trader_id and t.user_id = (select auth.uid())));
create policy signal_analyses_read_own on public.signal_analyses
    for select to authenticated using (exists (
        select 1 from public.signals s join public.traders t on t.id = s.trader_id
        where s.id = signal_id and t.user_id = (select auth.uid())));
create policy management_decisions_read_own on public.management_decisions
    for select to authenticated using (exists (
        select 1 from public.positions p join public.traders t on t.id = p.trader_id
        where p.id = position_id and t.user_id = (select auth.uid())));
create policy workflow_errors_read_own on public.workflow_errors
    for select to authenticated using (exists (
        select 1 from public.workflow_schedules w join public.traders t on t.id = w.trader_id
        where w.id = workflow_id and t.user_id = (select auth.uid())));
create policy notifications_read_own on public.notifications
    for select to authenticated using (user_id = (select auth.uid()));
-- rollout_settings: no policy at all, so only the service role sees it.

revoke all on
    public.user_profiles, public.traders, public.signals, public.positions,
    public.workflow_schedules, public.signal_analyses, public.management_decisions,
    public.workflow_errors, public.notifications, public.rollout_settings
    from anon, authenticated;
grant select on
    public.user_profiles, public.traders, public.signals, public.positions,
    public.workflow_schedules, public.signal_analyses, public.management_decisions,
    public.workflow_errors, public.notifications
    to authenticated;
grant all on
    public.user_profiles, public.traders, public.signals, public.positions,
    public.workflow_schedules, public.signal_analyses, public.management_decisions,
    public.workflow_errors, public.notifications, public.rollout_settings
    to service_role;
