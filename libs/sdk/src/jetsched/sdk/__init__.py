"""The jetsched Python SDK: submit jobs with `Client`, run them with `Worker` and `@task`.

from jetsched.sdk import task, Job

@task("thumbnail")
async def thumbnail(job: Job) -> dict:
    return {"resized": job.payload["url"], "attempt": job.attempt}
"""

from ._client import Client, JobOptions, current_client, schedule_spec
from ._errors import Fatal, JetschedApiError, JobFailed, Retry, SessionConflict
from ._handle import JobHandle
from ._models import JobError, JobInfo, JobLease, JobPage
from ._tasks import Job, Tasks, default_tasks, task
from ._worker import Worker
from ._workflows import Step, Steps, chain, chord, group, step, workflow_body

__all__ = [
    "Client",
    "Fatal",
    "JetschedApiError",
    "Job",
    "JobError",
    "JobFailed",
    "JobHandle",
    "JobInfo",
    "JobLease",
    "JobOptions",
    "JobPage",
    "Retry",
    "SessionConflict",
    "Step",
    "Steps",
    "Tasks",
    "Worker",
    "chain",
    "chord",
    "current_client",
    "default_tasks",
    "group",
    "schedule_spec",
    "step",
    "task",
    "workflow_body",
]
