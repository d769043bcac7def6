"""The embedded runtime behind `cmon local`, `cmon demo`, `cmon replay` and the e2e tests.

`stack` builds the local stack (embedded Postgres, moto in its own process via
`moto_process`, the stub llm-proxy, the handlers' container from `wiring.build`, with
`job_batcher` coalescing concurrent SQS sends); `serve` is `cmon local` (with `serve_options`,
`console`, `api_server`); `demo` / `demo_story` / `demo_summary`; `replay` / `replay_input` /
`replay_entities` / `replay_summary`; `report` / `report_model` / `report_html`;
`stub_llm` / `stub_state` / `stub_answers` / `stub_http`; `relay` (NOTIFY →
webhook bodies); `runner` (the Lambda event-source mappings); `aws_stack`, `embedded_db`,
`db_pool`, `live_view`. Production code never imports this package.
"""
