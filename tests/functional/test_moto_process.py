"""moto in its own process: serves SQS and EventBridge, stops with its parent, even a killed one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import boto3

from functions.local.moto_process import moto_process


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="ascii") as file:  # a zombie is gone too
        return file.read().rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, timeout_s: float = 20) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_it_serves_sqs_from_another_process_and_stops_on_exit() -> None:
    with moto_process() as moto:
        endpoint = moto.endpoint()
        assert moto.pid != os.getpid()
        sqs = boto3.client(
            "sqs", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(3)]
        )
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert sorted(m["Body"] for m in got) == ["m0", "m1", "m2"]
        pid = moto.pid
    assert _wait_gone(pid)


_PARENT = """
from functions.local.moto_process import MotoProcess
moto = MotoProcess()
print(moto.pid, moto.endpoint(), flush=True)
import time
time.sleep(600)
"""


def test_a_killed_parent_leaves_no_moto_behind() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child_pid, endpoint = parent.stdout.readline().split()
        assert endpoint.startswith("http://127.0.0.1:")
        assert _alive(int(child_pid))
        parent.send_signal(signal.SIGKILL)  # no cleanup code runs
        parent.wait(10)
        assert _wait_gone(int(child_pid))  # its stdin closed with the parent
    finally:
        if parent.poll() is None:
            parent.kill()
