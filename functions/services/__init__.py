"""One module per use case, over the role ports of `ports.py` (never an adapter):

`fan_out` (a candle → one job per workflow), `analyse_setup` and `manage_position` (one
job: claim, context, llm-proxy, record + apply), `jobs` (what both share: the failure
path and metrics), `register` (webhooks start and stop workflows), `reconcile` (the
scheduled repair), `operator` (rollback, undo, resume, the rollout gate).
"""
