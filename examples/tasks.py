# tasks.py
from jetsched.sdk import Fatal, Job, Retry, task

@task("email.send")
async def send_email(job: Job) -> dict:
    # job.id and job.attempt name this execution: use them to make side effects idempotent.
    if "@" not in job.payload["to"]:
        raise Fatal("not an address")          # no retry: straight to the dead letters
    if job.payload.get("throttled"):
        raise Retry(delay=30)                  # run again in 30 s; spends an attempt (spend_attempt=False: not)
    return {"sent_to": job.payload["to"]}      # any other exception retries with backoff

@task("report.render")
def render(job: Job) -> str:                   # plain `def` handlers run in a thread
    return f"rendered {job.payload['name']}"
