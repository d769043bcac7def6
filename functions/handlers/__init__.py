"""The Lambda entry points, each a few lines: parse the event, call a service, answer.

`fanout` (EventBridge), `setup_analysis` and `position_management` (SQS, through
`_sqs_worker`), `api` (FastAPI + Mangum: webhooks and the admin API), `reconciler`
(schedule). `wiring.build` is the one place their dependencies are built.
"""
