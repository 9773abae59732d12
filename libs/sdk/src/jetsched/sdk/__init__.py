"""The jetsched Python SDK: submit jobs with `Client`, run them with `Worker` and `@task`.

from jetsched.sdk import task, Job

@task("thumbnail")
async def thumbnail(job: Job) -> dict:
    return {"resized": job.payload["url"], "attempt": job.attempt}
"""

from ._client import Client, schedule_spec
from ._errors import Fatal, JetschedApiError, Retry, SessionConflict
from ._tasks import Job, Tasks, default_tasks, task
from ._worker import Worker
from ._workflows import Step, Steps, chain, chord, group, step, workflow_body

__all__ = [
    "Client",
    "Fatal",
    "JetschedApiError",
    "Job",
    "Retry",
    "SessionConflict",
    "Step",
    "Steps",
    "Tasks",
    "Worker",
    "chain",
    "chord",
    "default_tasks",
    "group",
    "schedule_spec",
    "step",
    "task",
    "workflow_body",
]
