"""Every subject, stream, consumer and KV bucket name jetsched uses — the vocabulary of the wire contract.

`docs/protocol.md` documents these for clients and workers in other languages; change them only there first.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .types import Capability, SessionId

PREFIX = "jetsched"

#: KV bucket of job records, one key per job id.
JOBS_BUCKET = "jobs"
#: KV bucket of schedules (cron or interval) with their fire ledgers, one key per schedule id.
SCHEDULES_BUCKET = "schedules"
#: KV bucket of queue settings per capability (`{"paused": true}`), written by the control API.
QUEUES_BUCKET = "queues"
#: KV bucket of shard leases and service membership (`<service>.shard.<n>`, `<service>.member.<instance>`).
LEASES_BUCKET = "leases"
#: KV bucket of the timer's entries: job id → the due time (epoch ms) its record waits for.
TIMERS_BUCKET = "timers"
#: KV bucket of stored items set aside because they cannot be read or acted on (`<bucket>.<key>`).
QUARANTINE_BUCKET = "quarantine"
#: KV bucket mapping idempotency keys to job ids (`<capability>.<sha256 of key>`), and workflow keys to
#: workflow ids (`=workflow.<sha256 of key>`).
KEYS_BUCKET = "job_keys"
#: KV bucket of workflow records (the DAG and where each step stands), one key per workflow id.
WORKFLOWS_BUCKET = "workflows"
#: KV bucket of the latest progress an attempt reported (`job.progress()`), one key per job id.
PROGRESS_BUCKET = "progress"
#: Stream of finished (succeeded, cancelled) job records, moved out of the `jobs` bucket by the reaper: one
#: message per job on `history(id, state, capability)`, kept for the retention by age and size.
HISTORY_STREAM = "JOB_HISTORY"
#: Stream of worker outcome reports (durable before the reaper applies them).
OUTCOMES_STREAM = "JETSCHED_OUTCOMES"
#: Durable consumer (and queue group) the reaper replicas share on the outcomes stream.
OUTCOMES_CONSUMER = "reaper"
#: Subject the outcomes consumer pushes to; reapers subscribe to it in the queue group above.
OUTCOMES_DELIVER = f"_{PREFIX}.deliver.outcomes"

#: Queue group every replica of a service joins for request/reply subjects.
INTAKE_QUEUE = "jetsched-intake"


def submit(capability: Capability) -> str:
    """Request subject a client submits a job to."""
    return f"{PREFIX}.submit.{capability}"


SUBMIT_ALL = f"{PREFIX}.submit.>"
#: A submit request's header, and its value, by which a client asks for JetStream's ack of the stored
#: record as the reply, sent to `<reply>.<job id>.<state>` (docs/protocol.md, "Replied by the store").
REPLY_HEADER = "Jetsched-Reply"
#: The longest reply subject a service answers on.
MAX_REPLY_BYTES = 256
REPLY_BY_STORE = "store-ack"


def batch(capability: Capability) -> str:
    """Request subject a client submits many jobs of one capability to, in one message."""
    return f"{PREFIX}.batch.{capability}"


BATCH_ALL = f"{PREFIX}.batch.>"

#: Request subject a client submits a workflow (a DAG of steps) to.
WORKFLOW_SUBMIT = f"{PREFIX}.workflow.submit"


def api(name: str) -> str:
    """Control API request subject, e.g. `api("jobs.get")`."""
    return f"{PREFIX}.api.{name}"


API_ALL = f"{PREFIX}.api.>"


def work(capability: Capability, session: SessionId) -> str:
    """Subject a dispatcher sends a claimed job to; only that worker session subscribes."""
    return f"{PREFIX}.work.{capability}.{session}"


WORK_ALL = f"{PREFIX}.work.>"


def outcome(capability: Capability, job_id: str) -> str:
    """Subject a worker publishes an outcome report to, as a request: a reaper stores it in the outcomes
    stream under `reported` and answers with JetStream's ack (`reaper/service.py`, `relay`).

    The job id is the last token so the reaper can ask the stream whether a report for a job is pending.
    """
    return f"{PREFIX}.outcome.{capability}.{job_id}"


OUTCOME_ALL = f"{PREFIX}.outcome.>"
_OUTCOME_PREFIX = f"{PREFIX}.outcome."
#: Queue group of the reapers relaying outcome reports into the outcomes stream.
OUTCOMES_RELAY = "relay"


def reported(outcome_subject: str) -> str:
    """The subject an outcome report published on `outcome_subject` is stored under in the outcomes
    stream. Not the subject workers publish to: a stream capturing a subject anyone may publish to acks
    each message to the reply subject its publisher names, whatever that is — a job record's key, say
    (docs/security.md) — so only a reaper, which answers inboxes only, publishes into the stream."""
    return f"{PREFIX}.reported.{outcome_subject.removeprefix(_OUTCOME_PREFIX)}"


REPORTED_ALL = f"{PREFIX}.reported.>"


def progress(job_id: str) -> str:
    """Subject a worker reports an attempt's progress on (core NATS, best-effort; intake stores it)."""
    return f"{PREFIX}.progress.{job_id}"


PROGRESS_ALL = f"{PREFIX}.progress.*"


def heartbeat(session: SessionId) -> str:
    """Subject a worker session announces itself on (core NATS, not stored)."""
    return f"{PREFIX}.hb.{session}"


HEARTBEAT_ALL = f"{PREFIX}.hb.*"


def control(session: SessionId) -> str:
    """Subject services send commands (cancel) to one worker session on."""
    return f"{PREFIX}.control.{session}"


CONTROL_ALL = f"{PREFIX}.control.*"


def changed(job_id: str) -> str:
    """Subject a service announces each write of a job's record on (core NATS, best-effort).

    Named by a digest of the id, not the id: whoever may listen to every job's changes learns no job id,
    so cannot read records it was not told about; whoever knows an id computes its subject.
    """
    return f"{PREFIX}.changed.{hashlib.sha256(job_id.encode()).hexdigest()[:32]}"


CHANGED_ALL = f"{PREFIX}.changed.*"


def history(job_id: str, state: str, capability: Capability) -> str:
    """Subject a finished job's record is stored on in the history stream.

    The id comes first, so `history(id, "*", ">")`-style filters find one job, and the state and the
    capability (which may have several tokens) after it, so a listing filters without reading records.
    """
    return f"{PREFIX}.history.{job_id}.{state}.{capability}"


HISTORY_ALL = f"{PREFIX}.history.>"


def history_filter(job_id: str | None = None, state: str | None = None, capability: str | None = None) -> str:
    """A history subject filter: any id, state or capability left None matches all."""
    return f"{PREFIX}.history.{job_id or '*'}.{state or '*'}.{capability or '>'}"


def kv_stream(bucket: str) -> str:
    return f"KV_{bucket}"


#: Job record partitions a deployment may have (each a stream: a few per node is plenty).
MAX_RECORD_PARTITIONS = 32


def jobs_bucket(partition: int) -> str:
    """The bucket of one partition of the job records (`JETSCHED_RECORD_PARTITIONS`): `jobs` for the
    first — the only one by default — then `jobs-1`, `jobs-2`, …; a job's partition is `shard_of(its id,
    partitions)`."""
    return JOBS_BUCKET if partition == 0 else f"{JOBS_BUCKET}-{partition}"


def is_reply(subject: str) -> bool:
    """Whether a request's reply subject is one a service may answer on: an inbox — `_INBOX.…`, or
    `_INBOX_<identity>.…` as each identity of a secured deployment has — and one plain subject.

    NATS checks a publisher's permissions on the subject it publishes to, never on the reply subject it
    names; a service answering (or having JetStream ack a write) on any reply would publish there with
    *its* permissions. A submit-only client could so overwrite a job record (`$KV.jobs.<id>`), call the
    JetStream API, or flood the lease bucket with members. Anything else is no reply: the request is not
    handled.
    """
    if not subject.startswith("_INBOX") or len(subject) > MAX_REPLY_BYTES:
        return False
    if not subject.isascii() or not subject.isprintable() or any(c in subject for c in " *>"):
        return False
    prefix, _, rest = subject.partition(".")
    if prefix != "_INBOX" and not (
        prefix.startswith("_INBOX_") and prefix[7:].replace("_", "").replace("-", "").isalnum()
    ):
        return False
    return bool(rest) and all(rest.split("."))


#: Every bucket a job record may live in (for permissions, which cannot know the deployment's count).
ALL_JOBS_BUCKETS = tuple(jobs_bucket(p) for p in range(MAX_RECORD_PARTITIONS))
