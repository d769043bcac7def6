"""The edge: each module wraps one SDK and answers in our models and errors.

`postgres` (psycopg 3, the SQL clock), `repository` (the worker roles over the SQL
functions), `contexts` (a job's prompt context: one SQL function call), `operations`
(every operator, demo, report and replay read), `operator_db` (the operator's recording
SQL functions), `llm_calls` / `llm_proxy` / `edge_llm` (llm-proxy over HTTP or as an Edge
Function), `aws` (SQS, EMF metrics), `migrations`, `secrets`, `tracing`, `supabase_webhooks`.
"""
