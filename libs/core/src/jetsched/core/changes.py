"""A write to a job record as the record feed delivers it, decoded only as far as a reader needs.

Every record write carries headers — state, capability, (while leased) session, and (while a start
deadline is pending) the deadline — so a service can route an update without parsing the record: the
timer decodes only records it must arm, the reaper only `running` ones. A record written without the
headers is decoded to fill them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .models import JobRecord, JobState

STATE_HEADER = "Jetsched-State"
#: A state by its header's value: a look-up, where `JobState(value)` costs ~1 µs a message (an unknown
#: value still goes through `JobState`, for its error).
_STATES = {state.value: state for state in JobState}
CAPABILITY_HEADER = "Jetsched-Capability"
SESSION_HEADER = "Jetsched-Session"
#: Present on a ready or scheduled job with a start deadline whose first attempt has not started.
EXPIRES_HEADER = "Jetsched-Expires-At"
#: The job's concurrency key, when it has one (dispatchers count running jobs per key).
KEY_HEADER = "Jetsched-Concurrency-Key"
#: The workflow a step's job belongs to (the reaper advances the workflow when the step ends).
WORKFLOW_HEADER = "Jetsched-Workflow"


def timer_due(record: JobRecord) -> int | None:
    """When the timer must look at this record next: a scheduled job's start, or just past a ready job's
    start deadline; None if the record waits for no time."""
    if record.state is JobState.SCHEDULED:
        return record.run_at_ms
    if record.state is JobState.READY and record.expires_at_ms is not None and record.attempts_used == 0:
        return record.expires_at_ms + 1
    return None


def headers_of(record: JobRecord) -> dict[str, str]:
    headers = {STATE_HEADER: record.state.value, CAPABILITY_HEADER: record.capability}
    if record.lease is not None:
        headers[SESSION_HEADER] = record.lease.session
    if (
        record.expires_at_ms is not None
        and record.attempts_used == 0
        and record.state is not JobState.RUNNING
    ):
        headers[EXPIRES_HEADER] = str(record.expires_at_ms)
    if record.concurrency_key is not None:
        headers[KEY_HEADER] = record.concurrency_key
    if record.workflow is not None:
        headers[WORKFLOW_HEADER] = record.workflow.id
    return headers


@dataclass(slots=True)
class Change:
    id: str
    revision: int
    #: None when the key was deleted or purged.
    state: JobState | None
    capability: str = ""
    session: str | None = None
    expires_at_ms: int | None = None
    concurrency_key: str | None = None
    data: bytes = b""
    #: The workflow of a step's job.
    workflow: str | None = None
    _record: JobRecord | None = field(default=None, repr=False)

    def record(self) -> JobRecord:
        if self._record is None:
            self._record = JobRecord.model_validate_json(self.data)
        return self._record

    @classmethod
    def of(cls, record: JobRecord, revision: int) -> Change:
        change = cls.from_headers(record.id, revision, headers_of(record), b"")
        change._record = record
        return change

    @classmethod
    def deleted(cls, job_id: str, revision: int) -> Change:
        return cls(job_id, revision, None)

    @classmethod
    def from_headers(cls, job_id: str, revision: int, headers: dict[str, str], data: bytes) -> Change:
        expires = headers.get(EXPIRES_HEADER)
        return cls(
            job_id,
            revision,
            _STATES.get(headers[STATE_HEADER]) or JobState(headers[STATE_HEADER]),
            headers[CAPABILITY_HEADER],
            headers.get(SESSION_HEADER),
            int(expires) if expires else None,
            headers.get(KEY_HEADER),
            data,
            headers.get(WORKFLOW_HEADER),
        )

    @classmethod
    def from_message(cls, job_id: str, revision: int, data: bytes, headers: dict[str, str] | None) -> Change:
        if not headers or STATE_HEADER not in headers:
            return cls.of(JobRecord.model_validate_json(data), revision)
        return cls.from_headers(job_id, revision, headers, data)
