"""`@task`: which calling convention a handler gets, its defaults, and what its submit sends."""

from __future__ import annotations

import asyncio

import pytest

from jetsched.sdk import Job, JobTask, Task, Tasks, current_job


def job(payload: object) -> Job:
    return Job("01KBZ3R6X9T2M0Q7D5W8C4N1HE", 1, "cap", payload, 5, 0)


class TestRegistration:
    def test_a_job_handler_receives_the_job(self) -> None:
        """A handler with one parameter named `job` is registered as is and gets the `Job`."""
        tasks = Tasks()

        @tasks.task("cap")
        def handler(job: Job) -> object:
            return job.payload

        assert isinstance(handler, JobTask)
        assert tasks.handlers["cap"](job([1])) == [1]
        assert handler(job(2)) == 2  # still callable as the function

    def test_a_fields_handler_gets_keyword_arguments_and_the_current_job(self) -> None:
        """Any other signature is called with the payload's fields; `current_job()` names the job."""
        tasks = Tasks()

        @tasks.task("email.send", priority=8)
        async def send(to: str, subject: str = "hi") -> tuple[str, str, str]:
            return to, subject, current_job().id

        assert isinstance(send, Task)

        async def run() -> object:
            return await tasks.handlers["email.send"](job({"to": "a@b.c"}))

        assert asyncio.run(run()) == ("a@b.c", "hi", "01KBZ3R6X9T2M0Q7D5W8C4N1HE")
        with pytest.raises(LookupError):
            current_job()

    def test_a_sync_fields_handler(self) -> None:
        """A plain `def` with fields stays a plain function (the worker runs it in a thread)."""
        tasks = Tasks()

        @tasks.task
        def add(a: int, b: int) -> int:
            return a + b

        assert tasks.handlers["add"](job({"a": 1, "b": 2})) == 3
        assert not asyncio.iscoroutinefunction(tasks.handlers["add"])

    def test_a_fields_handler_refuses_a_payload_that_is_not_an_object(self) -> None:
        """A list payload cannot be keyword arguments: the attempt fails with a clear error."""
        tasks = Tasks()

        @tasks.task("add")
        def add(a: int) -> int:
            return a

        with pytest.raises(TypeError, match="payload must be an object"):
            tasks.handlers["add"](job([1]))

    def test_unknown_defaults_and_second_handlers_are_refused(self) -> None:
        """A misspelt default fails at decoration; one capability has one function."""
        tasks = Tasks()
        with pytest.raises(TypeError, match="prio"):
            tasks.task("x", prio=1)  # type: ignore[call-overload]

        @tasks.task("x")
        def first(job: Job) -> None: ...

        tasks.task("x")(first.fn)  # the same function again is fine
        with pytest.raises(ValueError, match="already has a handler"):

            @tasks.task("x")
            def second(job: Job) -> None: ...


class TestOptions:
    def test_overrides_merge_over_defaults_without_changing_them(self) -> None:
        """`with_options` returns a copy whose options are the defaults updated by the overrides."""
        tasks = Tasks()

        @tasks.task("cap", priority=3, max_attempts=2)
        def handler(job: Job) -> None: ...

        urgent = handler.with_options(priority=9, key="k")
        assert urgent.defaults == {"priority": 9, "max_attempts": 2}
        assert urgent.with_options(priority=1)._key == "k"  # a further override keeps the key
        assert handler.defaults == {"priority": 3, "max_attempts": 2}
        assert urgent.capability == "cap"

    async def test_submit_checks_arguments_before_sending(self) -> None:
        """Arguments that do not fit the handler's signature are a `TypeError`; nothing is sent."""
        tasks = Tasks()

        @tasks.task("cap")
        async def handler(to: str) -> None: ...

        with pytest.raises(TypeError):
            await handler.submit(too="x")  # type: ignore[call-arg]
