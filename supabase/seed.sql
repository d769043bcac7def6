-- Demo data (`supabase db reset` applies it; `cmon demo` builds its own).
-- One elite user with a 1m trader that auto-analyses its signals, one waiting
-- signal with its initial analysis, and one open position.
insert into public.user_profiles (id, email, subscription_tier)
values ('00000000-0000-4000-8000-000000000001', 'elite@example.test', 'elite')
on conflict (id) do nothing;

insert into public.traders (id, user_id, name, auto_analyze_signals, filter)
values ('00000000-0000-4000-8000-000000000101', '00000000-0000-4000-8000-000000000001',
        'BTC 1m momentum', true, '{"interval": "1m"}')
on conflict (id) do nothing;

insert into public.signals (id, trader_id, symbol, status)
values ('00000000-0000-4000-8000-000000000201', '00000000-0000-4000-8000-000000000101', 'BTCUSDT', 'new')
on conflict (id) do nothing;

insert into public.signal_analyses (signal_id, decision, confidence, reasoning, analysis_type)
values ('00000000-0000-4000-8000-000000000201', 'wait', 0.62, 'No confirmation yet', 'initial')
on conflict do nothing;

insert into public.positions (id, trader_id, symbol, side, entry_price, contracts, initial_contracts,
                              stop_loss, take_profit)
values ('00000000-0000-4000-8000-000000000301', '00000000-0000-4000-8000-000000000101', 'ETHUSDT',
        'long', 3012.50, 0.5, 0.5, 2950.00, 3150.00)
on conflict (id) do nothing;
