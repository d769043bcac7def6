"""The brief's log fields, built in one place (functions/services/log_fields.py)."""

from __future__ import annotations

from uuid import UUID

from functions.core.models import WorkflowIdentity
from functions.services.log_fields import ERROR_MESSAGE_MAX, error_fields, identity_fields, workflow_fields

WF = UUID("aaaaaaaa-0000-4000-8000-000000000001")
SIG = UUID("bbbbbbbb-0000-4000-8000-000000000002")
POS = UUID("cccccccc-0000-4000-8000-000000000003")


def test_workflow_and_signal_are_always_named_the_rest_when_known() -> None:
    assert workflow_fields(workflow_id=WF, signal_id=SIG) == {"workflow_id": str(WF), "signal_id": str(SIG)}
    assert workflow_fields(workflow_id=None, signal_id=None) == {"workflow_id": "", "signal_id": ""}
    assert workflow_fields(
        workflow_id=WF, signal_id=None, position_id=POS, symbol="BTCUSDT", interval="1m"
    ) == {
        "workflow_id": str(WF),
        "signal_id": "",
        "position_id": str(POS),
        "symbol": "BTCUSDT",
        "interval": "1m",
    }


def test_identity_fields_name_the_workflows_entity_and_stream() -> None:
    identity = WorkflowIdentity(
        workflow_id=WF, workflow_type="position_management", signal_id=SIG, position_id=POS, symbol="ETHUSDT",
        interval="5m",
    )  # fmt: skip
    assert identity_fields(identity) == {
        "workflow_id": str(WF),
        "signal_id": str(SIG),
        "position_id": str(POS),
        "symbol": "ETHUSDT",
        "interval": "5m",
    }


def test_error_fields_cut_long_messages() -> None:
    fields = error_fields(RuntimeError("x" * (ERROR_MESSAGE_MAX + 50)), "llm_unavailable", 3)
    assert fields == {
        "error_kind": "llm_unavailable",
        "error_message": "x" * ERROR_MESSAGE_MAX,
        "consecutive_errors": 3,
    }
