"""The jetsched Python SDK: submit jobs with `Client` (or `SyncClient`), run them with `Worker` and `@task`.

from jetsched.sdk import task

@task("thumbnail", priority=7)
async def thumbnail(url: str) -> dict:
    return {"resized": url}

handle = await thumbnail.submit(url="https://…")   # through the open Client
print(await handle.result())

docs/sdk.md is the guide.
"""

from ._client import Client, JobOptions, current_client, schedule_spec
from ._errors import Fatal, JetschedApiError, JobFailed, Retry, SessionConflict
from ._handle import JobHandle
from ._middleware import Middleware, Submit, Tracing
from ._models import (
    Draining,
    Fire,
    FireTime,
    FleetStats,
    HistoryStats,
    JobChange,
    JobError,
    JobInfo,
    JobLease,
    JobPage,
    JobProgress,
    QueueConfig,
    QueueSignals,
    ScheduleInfo,
    SchedulePreview,
    ScheduleSettings,
    Stats,
    StepInfo,
    WorkerInfo,
    WorkflowChange,
    WorkflowInfo,
    WorkflowPage,
    WorkflowReply,
    WorkflowSummary,
)
from ._sync import SyncClient, SyncJobHandle
from ._tasks import Job, JobTask, Task, Tasks, current_job, default_tasks, task
from ._worker import Worker
from ._workflows import Step, Steps, chain, chord, group, step, workflow_body

__all__ = [
    "Client",
    "Draining",
    "Fatal",
    "Fire",
    "FireTime",
    "FleetStats",
    "HistoryStats",
    "JetschedApiError",
    "Job",
    "JobChange",
    "JobError",
    "JobFailed",
    "JobHandle",
    "JobInfo",
    "JobLease",
    "JobOptions",
    "JobPage",
    "JobProgress",
    "JobTask",
    "Middleware",
    "QueueConfig",
    "QueueSignals",
    "Retry",
    "ScheduleInfo",
    "SchedulePreview",
    "ScheduleSettings",
    "SessionConflict",
    "Stats",
    "Step",
    "StepInfo",
    "Steps",
    "Submit",
    "SyncClient",
    "SyncJobHandle",
    "Task",
    "Tasks",
    "Tracing",
    "Worker",
    "WorkerInfo",
    "WorkflowChange",
    "WorkflowInfo",
    "WorkflowPage",
    "WorkflowReply",
    "WorkflowSummary",
    "chain",
    "chord",
    "current_client",
    "current_job",
    "default_tasks",
    "group",
    "schedule_spec",
    "step",
    "task",
    "workflow_body",
]
