"""The official Durable Functions Python client (`azure-functions-durable`, pinned in
requirements.txt) against a running `flowforge worker`, unchanged. The Python client speaks
only to `rpcBaseUrl`, the host's local endpoint (no key, loopback only), and sends inputs
and event data JSON-encoded once more than needed.

Usage: python py_client.py <rpc base url> <id prefix>
Exits non-zero on the first disagreement; prints one line per call.
"""
import asyncio
import json
import sys
from datetime import datetime, timedelta, timezone

import azure.functions as func
from azure.durable_functions import DurableOrchestrationClient, OrchestrationRuntimeStatus

BASE, PREFIX = sys.argv[1], sys.argv[2]
CLIENT = DurableOrchestrationClient(json.dumps({
    "taskHubName": "clients",
    "creationUrls": {},
    "managementUrls": {},
    "rpcBaseUrl": BASE,
}))


def said(what):
    print(f"py rpc: {what}", flush=True)


async def until(instance_id, wanted):
    for _ in range(600):
        status = await CLIENT.get_status(instance_id)
        if status.runtime_status == wanted:
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{instance_id} never became {wanted}")


async def main():
    t0 = datetime.now(timezone.utc) - timedelta(minutes=1)
    files = {"files": ["a.csv", "bb.csv"], "pause_ms": 0}

    generated = await CLIENT.start_new("demo", client_input=files)
    instance = await CLIENT.start_new("demo", f"{PREFIX}-demo", files)
    assert instance == f"{PREFIX}-demo", instance
    said("start_new with and without an id (input encoded twice)")

    request = func.HttpRequest(method="GET", url=f"{BASE}orchestrators/demo", body=b"")
    waited = await CLIENT.wait_for_completion_or_create_check_status_response(
        request, instance, timeout_in_milliseconds=60_000, retry_interval_in_milliseconds=100)
    assert waited.status_code == 200, waited.get_body()
    assert json.loads(waited.get_body()) == {"sizes": [5120, 6144], "total": 11264}
    said("wait_for_completion_or_create_check_status_response: 200 with the output")
    await until(generated, OrchestrationRuntimeStatus.Completed)

    status = await CLIENT.get_status(instance, show_history=True, show_history_output=True,
                                     show_input=True)
    assert status.runtime_status == OrchestrationRuntimeStatus.Completed
    completed = [e for e in status.history if e["EventType"] == "TaskCompleted"]
    assert len(completed) == 3, status.history
    assert status.input_ is not None
    said("get_status with history and input")

    every = {s.instance_id for s in await CLIENT.get_status_all()}
    assert {instance, generated} <= every, every
    done = await CLIENT.get_status_by(created_time_from=t0,
                                      created_time_to=datetime.now(timezone.utc) + timedelta(minutes=1),
                                      runtime_status=[OrchestrationRuntimeStatus.Completed])
    assert instance in {s.instance_id for s in done}
    prefixed = await CLIENT.get_status_by(instance_id_prefix=f"{PREFIX}-de")
    assert {s.instance_id for s in prefixed} == {instance}, [s.instance_id for s in prefixed]
    said("get_status_all and get_status_by (time range, statuses, id prefix)")

    approve = await CLIENT.start_new("await_approval", f"{PREFIX}-approve", 600)
    await until(approve, OrchestrationRuntimeStatus.Running)
    await CLIENT.raise_event(approve, "approve", "ada")
    approved = await until(approve, OrchestrationRuntimeStatus.Completed)
    assert approved.output == "approved by ada", approved.output
    said("raise_event (data encoded twice arrives as sent)")

    held = await CLIENT.start_new("await_approval", f"{PREFIX}-held", 600)
    await until(held, OrchestrationRuntimeStatus.Running)
    await CLIENT.suspend(held, "a pause")
    await until(held, OrchestrationRuntimeStatus.Suspended)
    await CLIENT.resume(held, "go on")
    await until(held, OrchestrationRuntimeStatus.Running)
    await CLIENT.terminate(held, "no longer needed")
    await until(held, OrchestrationRuntimeStatus.Terminated)
    said("suspend, resume, terminate")

    restarted = await CLIENT.restart(instance)
    restarted_id = restarted["id"] if isinstance(restarted, dict) else restarted
    assert restarted_id != instance
    again = await until(restarted_id, OrchestrationRuntimeStatus.Completed)
    assert again.output == {"sizes": [5120, 6144], "total": 11264}, again.output
    said("restart with a new instance id")

    try:
        await CLIENT.start_new("no_such_orchestration", client_input=1)
        raise AssertionError("an unknown orchestration was started")
    except Exception as error:  # the client raises a bare Exception with the reason
        assert "no orchestration named" in str(error), error
    said("start_new of an unknown orchestration is refused with the reason")

    bad = await CLIENT.start_new("medallion", f"{PREFIX}-bad",
                                 {"workflow_id": "w", "job_id": PREFIX, "dataset": "no_such_dataset"})
    await until(bad, OrchestrationRuntimeStatus.Failed)
    await CLIENT.rewind(bad, "try again")
    for _ in range(600):
        status = await CLIENT.get_status(bad, show_history=True)
        rewound = any(e["EventType"] == "ExecutionRewound" for e in status.history)
        if rewound and status.runtime_status == OrchestrationRuntimeStatus.Failed:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the rewind was not recorded")
    said("rewind")

    assert (await CLIENT.purge_instance_history(generated)).instances_deleted == 1
    purged = await CLIENT.purge_instance_history_by(
        created_time_from=t0, runtime_status=[OrchestrationRuntimeStatus.Terminated])
    assert purged.instances_deleted >= 1, purged.instances_deleted
    gone = await CLIENT.get_status(held)
    assert gone.runtime_status is None, gone.runtime_status
    said(f"purge_instance_history and purge_instance_history_by ({purged.instances_deleted} deleted)")
    print("py rpc: all calls agree", flush=True)


asyncio.run(main())
