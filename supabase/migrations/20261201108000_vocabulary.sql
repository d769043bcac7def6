-- One vocabulary shared by Python and SQL (functions/core/vocabulary.py).
--
-- 1. One name per rule: a reduce whose fraction is not in (0, 1) was
--    `invalid_reduce_fraction` when the Python guardrails refused it and
--    `reduce_fraction_out_of_range` when record_management_decision did. The SQL name
--    stays (RejectionReason.REDUCE_FRACTION_OUT_OF_RANGE); rows stored under the other
--    name are renamed here.
-- 2. The columns that hold a closed set say so with a check constraint, listing exactly
--    the values of the Python enum (tests/functional/test_vocabulary_sql.py compares the
--    two from pg_catalog). workflow_schedules.stopped_reason is not one of them: it holds
--    `signal_<status>` / `position_<status>` and an operator's own words.

update public.management_decisions
   set rejection_reason = 'reduce_fraction_out_of_range'
 where rejection_reason = 'invalid_reduce_fraction';

-- RejectionReason
alter table public.management_decisions
    drop constraint if exists management_decisions_rejection_reason_known;
alter table public.management_decisions
    add constraint management_decisions_rejection_reason_known check (rejection_reason in (
        'unknown_action', 'position_not_open', 'invalid_stop_loss',
        'stop_loss_on_wrong_side_of_price', 'stop_loss_loosened', 'invalid_take_profit',
        'take_profit_on_wrong_side_of_price', 'reduce_fraction_out_of_range',
        'reduce_leaves_no_size', 'stale_candle', 'position_changed', 'invalid_price', 'rejected'
    ));

-- ErrorKind
alter table public.workflow_errors
    drop constraint if exists workflow_errors_error_kind_known;
alter table public.workflow_errors
    add constraint workflow_errors_error_kind_known check (error_kind in (
        'llm_unavailable', 'llm_invalid_answer', 'llm_rejected', 'record_rejected'
    ));

-- LedgerOutcome and ErrorKind (a failed call is recorded under its error kind). A new
-- outcome (a shadow run's, say) is added here and to LedgerOutcome together.
alter table public.llm_calls
    drop constraint if exists llm_calls_outcome_known;
alter table public.llm_calls
    add constraint llm_calls_outcome_known check (outcome in (
        'ok', 'duplicate',
        'llm_unavailable', 'llm_invalid_answer', 'llm_rejected', 'record_rejected'
    ));
