"""A write to a job record as the record feed delivers it, decoded only as far as a reader needs.

Every record write carries three headers — state, capability and (while leased) session — so a service
can route an update without parsing the record: the timer decodes only `scheduled` records, the reaper
only `running` ones. A record written without the headers is decoded to fill them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .models import JobRecord, JobState

STATE_HEADER = "Jetsched-State"
CAPABILITY_HEADER = "Jetsched-Capability"
SESSION_HEADER = "Jetsched-Session"


def headers_of(record: JobRecord) -> dict[str, str]:
    headers = {STATE_HEADER: record.state.value, CAPABILITY_HEADER: record.capability}
    if record.lease is not None:
        headers[SESSION_HEADER] = record.lease.session
    return headers


@dataclass(slots=True)
class Change:
    id: str
    revision: int
    #: None when the key was deleted or purged.
    state: JobState | None
    capability: str = ""
    session: str | None = None
    data: bytes = b""
    _record: JobRecord | None = field(default=None, repr=False)

    def record(self) -> JobRecord:
        if self._record is None:
            self._record = JobRecord.model_validate_json(self.data)
        return self._record

    @classmethod
    def of(cls, record: JobRecord, revision: int) -> Change:
        session = record.lease.session if record.lease is not None else None
        return cls(record.id, revision, record.state, record.capability, session, b"", record)

    @classmethod
    def deleted(cls, job_id: str, revision: int) -> Change:
        return cls(job_id, revision, None)

    @classmethod
    def from_message(cls, job_id: str, revision: int, data: bytes, headers: dict[str, str] | None) -> Change:
        state = headers.get(STATE_HEADER) if headers else None
        if state is None or headers is None:
            return cls.of(JobRecord.model_validate_json(data), revision)
        return cls(
            job_id, revision, JobState(state), headers[CAPABILITY_HEADER], headers.get(SESSION_HEADER), data
        )
