"""The pure domain: no I/O, no SDK, no clock of its own (import-linter: imports nothing of ours).

- `contracts`: `CandleClosed` (the bus event) and `AnalysisJob` (the SQS message);
- `models`: what llm-proxy answers and what the SQL functions answer back;
- `vocabulary`: the words shared with SQL (job status, claim reasons, outcomes, error
  kinds, rejection and stop reasons), matched by check constraints;
- `guardrails`: what an LLM action may do to a position; `backtest`: the same rules over
  historical bars (`cmon replay`);
- `retry`: the one backoff policy; `intervals`, `webhooks`, `operator`, `cost`, `stats`,
  `telemetry` (log lines, metric names), `errors` (ours; adapters wrap SDK errors in them).
"""
