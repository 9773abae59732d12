"""Secure mode: every role is confined by the server to its job (docs/security.md).

A real nats-server runs with the configuration `jetsched security init` writes. Each forgery is refused
the way NATS refuses: the server answers a publish or subscribe outside the identity's permissions with
a "Permissions Violation" error (nats-py hands it to the error callback) and logs a "Publish Violation"
or "Subscription Violation"; the message goes nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import signal
import sys
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from nats.aio.client import Client as Nats
from nats.errors import Error as NatsError

from jetsched.bus import security
from jetsched.bus.auth import NatsAuth
from jetsched.cli.__main__ import main
from jetsched.core import subjects
from jetsched.devkit import procs
from jetsched.devkit.fleet import Fleet
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.devkit.waiting import eventually
from jetsched.dispatcher.service import DispatcherService
from jetsched.sdk import Client, Fatal, SessionConflict, Tasks, Worker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from jetsched.sdk import Job

WORKERS = ("alpha", "beta")


def _write_tls(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jetsched test CA")])

    def issue(name: str, key: Any, extensions: list[tuple[x509.ExtensionType, bool]]) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]) if key else ca_name)
            .issuer_name(ca_name)
            .public_key((key or ca_key).public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical)
        return builder.sign(ca_key, hashes.SHA256())

    files: dict[str, Path] = {}

    def save(stem: str, cert: x509.Certificate, key: Any) -> None:
        files[f"{stem}_cert"] = directory / f"{stem}.pem"
        files[f"{stem}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{stem}_key"] = directory / f"{stem}-key.pem"
        files[f"{stem}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    save("ca", issue("", None, [(x509.BasicConstraints(ca=True, path_length=None), True)]), ca_key)
    for stem in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        san = x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        )
        save(stem, issue(f"jetsched {stem}", key, [(san, False)]), key)
    return files


class Secure:
    """A nats-server under the generated configuration, and connections as any role."""

    def __init__(self, directory: Path, tls: dict[str, Path] | None) -> None:
        self.dir = directory
        self.tls = tls
        self.server: NatsServer | None = None

    def auth(self, role: str) -> NatsAuth:
        creds = str(security.creds_path(self.dir, role))
        if self.tls is None:
            return NatsAuth(creds=creds)
        return NatsAuth(
            creds, str(self.tls["ca_cert"]), str(self.tls["client_cert"]), str(self.tls["client_key"])
        )

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    async def connect(self, role: str) -> tuple[Nats, list[str]]:
        """A plain nats-py connection as `role`, with the errors the server sends it."""
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc).removeprefix("nats: "))

        return await connect(self.url, error_cb=on_error, **self.auth(role).options()), errors

    def violations(self) -> list[str]:
        assert self.server is not None
        return [
            line for line in self.server.log_path.read_text().splitlines() if " Violation - Subject " in line
        ]


async def connect(url: str, **options: Any) -> Nats:
    """nats-py's connect without reconnects, closing what a refused attempt leaves open."""
    nc = Nats()
    try:
        await nc.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2, **options)
    except BaseException:
        await nc.close()
        raise
    return nc


def _start(tmp_path: Path, tls: bool) -> Iterator[Secure]:
    directory = tmp_path / "creds"
    certs = _write_tls(tmp_path) if tls else None
    server_tls = (
        security.ServerTls(certs["server_cert"], certs["server_key"], certs["ca_cert"]) if certs else None
    )
    security.init(directory, WORKERS, port=-1, store_dir=tmp_path / "js", tls=server_tls, monitor_port=None)
    secure = Secure(directory, certs)
    secure.server = NatsServer(tmp_path / "js", config=directory / security.SERVER_CONF).start()
    try:
        yield secure
    finally:
        secure.server.stop()


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Secure]:
    yield from _start(tmp_path, tls=False)


@pytest.fixture
def secure_tls(tmp_path: Path) -> Iterator[Secure]:
    yield from _start(tmp_path, tls=True)


async def refused(nc: Nats, errors: list[str], *, publish: str = "", subscribe: str = "") -> None:
    """The server refuses this publish (or subscription) with a permissions violation naming it."""
    subject = publish or subscribe
    if publish:
        await nc.publish(publish, b"{}", reply=nc.new_inbox())
    else:
        await nc.subscribe(subscribe)
    await nc.flush()
    # nats-py lower-cases the server's error line, subject included.
    expected = f'permissions violation for {"publish" if publish else "subscription"} to "{subject}"'.lower()
    await eventually(lambda: expected in errors, timeout=5, what=f"nats: {expected}")


CLIENT_FORGERIES = [
    {"publish": subjects.outcome("demo.echo", "01JX")},
    {"publish": "$KV.jobs.01JX"},
    {"publish": "$JS.API.STREAM.MSG.GET.KV_jobs"},
    {"publish": "$JS.API.DIRECT.GET.KV_jobs"},
    {"publish": "$JS.API.STREAM.PURGE.KV_jobs"},
    {"publish": subjects.heartbeat("alpha")},
    {"publish": subjects.api("jobs.cancel")},
    {"subscribe": subjects.WORK_ALL},
    {"subscribe": "$KV.jobs.>"},
    {"subscribe": "_INBOX.>"},
    {"subscribe": subjects.OUTCOME_ALL},
]


WORKER_FORGERIES = [
    {"subscribe": subjects.work("demo.echo", "beta")},
    {"subscribe": subjects.control("beta")},
    {"subscribe": subjects.HEARTBEAT_ALL},
    {"publish": subjects.heartbeat("beta")},
    {"publish": "$KV.jobs.01JX"},
    {"publish": "$JS.API.INFO"},
    {"publish": "$JS.API.CONSUMER.CREATE.JETSCHED_OUTCOMES"},
    {"publish": subjects.submit("demo.echo")},
    {"publish": subjects.work("demo.echo", "beta")},
    {"publish": subjects.control("beta")},
]


@pytest.mark.parametrize(
    ("role", "forgery"),
    [("client", f) for f in CLIENT_FORGERIES] + [("worker-alpha", f) for f in WORKER_FORGERIES],
    ids=lambda f: f if isinstance(f, str) else " ".join(f"{k} {v}" for k, v in f.items()),
)
async def test_roles_are_confined(secure: Secure, role: str, forgery: dict[str, str]) -> None:
    """A client cannot report outcomes, read or purge storage, pose as a worker, or use the control API;
    worker alpha cannot take beta's work or commands, speak for beta, touch storage or the JetStream API."""
    nc, errors = await secure.connect(role)
    try:
        await refused(nc, errors, **forgery)
    finally:
        await nc.close()


SERVICE_FORGERIES = [
    ("reaper", {"publish": "$JS.API.STREAM.PURGE.KV_jobs"}),
    ("reaper", {"publish": "$JS.API.STREAM.DELETE.JETSCHED_OUTCOMES"}),
    ("intake", {"publish": "$JS.API.STREAM.PURGE.KV_job_keys"}),
    ("timer", {"publish": "$KV.leases.dispatcher.shard.0"}),
    ("dispatcher", {"publish": "$KV.queues.demo"}),
    ("intake", {"publish": subjects.work("demo.echo", "alpha")}),
    ("reaper", {"subscribe": subjects.SUBMIT_ALL}),
]


@pytest.mark.parametrize(("service", "forgery"), SERVICE_FORGERIES, ids=lambda f: str(f))
async def test_services_cannot_exceed_their_job(
    secure: Secure, service: str, forgery: dict[str, str]
) -> None:
    """No service purges or deletes streams, and each writes only what its own code writes."""
    nc, errors = await secure.connect(service)
    try:
        await refused(nc, errors, **forgery)
    finally:
        await nc.close()


async def test_unknown_identities_are_refused(secure: Secure, tmp_path: Path) -> None:
    """Without credentials, or with a seed the server does not know, nobody connects at all."""
    with pytest.raises(NatsError):
        await connect(secure.url)
    stranger = tmp_path / "stranger"
    security.init(stranger)
    with pytest.raises(NatsError):
        await connect(secure.url, **NatsAuth(creds=str(security.creds_path(stranger, "client"))).options())


async def test_identities_added_and_revoked_by_reload(secure: Secure) -> None:
    """`add-worker` plus SIGHUP lets a new identity in, and a deleted seed's live connection is cut off."""
    revoked, _ = await secure.connect("worker-beta")
    security.creds_path(secure.dir, "worker-beta").unlink()
    security.add_worker(secure.dir, "gamma")
    assert secure.server is not None
    assert secure.server.proc is not None
    secure.server.proc.send_signal(signal.SIGHUP)

    async def welcome() -> bool:
        try:
            nc, errors = await secure.connect("worker-gamma")
        except (NatsError, OSError):  # refused while the reload is pending: an error, or the connection cut
            return False
        await nc.subscribe(subjects.control("gamma"))
        await nc.flush()
        await nc.close()
        return not errors

    await eventually(welcome, timeout=10, what="the new identity to be accepted")
    await eventually(lambda: revoked.is_closed, timeout=10, what="the revoked identity to be cut off")


def _tasks() -> Tasks:
    tasks = Tasks()

    @tasks.task("demo.echo")
    async def echo(job: Job) -> Any:
        return job.payload

    @tasks.task("demo.block")
    async def block(job: Job) -> None:
        await asyncio.Event().wait()

    @tasks.task("demo.fatal")
    async def fatal(job: Job) -> None:
        raise Fatal("refuses")

    return tasks


@contextlib.asynccontextmanager
async def _secure_stack(secure: Secure) -> AsyncIterator[Worker]:
    """The four services, each as its own identity, and a worker as identity alpha."""
    async with _secured(secure) as (_, worker):
        yield worker


@contextlib.asynccontextmanager
async def _secured(secure: Secure) -> AsyncIterator[tuple[Stack, Worker]]:
    auth = {name: secure.auth(name) for name in security.ROLES}
    async with (
        Stack(secure.url, auth=auth) as stack,
        running_worker(_tasks(), secure.url, session="alpha", auth=secure.auth("worker-alpha")) as worker,
    ):
        yield stack, worker


async def test_end_to_end_over_tls(secure_tls: Secure) -> None:
    """A job submitted by a client identity runs on worker identity alpha (its session) over mutual TLS,
    and the whole lifecycle needs nothing any role was not granted."""
    async with _secure_stack(secure_tls):
        async with Client(secure_tls.url, auth=secure_tls.auth("client")) as client:
            reply = await client.submit("demo.echo", {"n": 1}, delay=0.2)
            job = await client.wait(reply.id, timeout=20)
            assert (job.state, job.result) == ("succeeded", {"n": 1})
        async with Client(secure_tls.url, auth=secure_tls.auth("operator")) as operator:
            assert (await operator.stats()).jobs == {"succeeded": 1}
    assert secure_tls.violations() == []


async def test_operator_paths_need_nothing_ungranted(secure: Secure) -> None:
    """Cancelling a running job, dead letters, schedules, queue settings and draining a worker all work
    under secure mode, and no service, worker or operator was refused anything on the way."""
    async with (
        _secure_stack(secure) as worker,
        Client(secure.url, auth=secure.auth("operator")) as operator,
    ):

        async def state(job_id: str, wanted: str) -> bool:
            return bool((await operator.get(job_id)).state == wanted)

        blocked = await operator.submit("demo.block")
        await eventually(lambda: state(blocked.id, "running"), what="the blocking job to run")
        await operator.cancel(blocked.id)
        await eventually(lambda: not worker.held, what="the worker to stop the cancelled job")

        dead = await operator.submit("demo.fatal")
        await eventually(lambda: state(dead.id, "dead"), what="the fatal job to die")
        await operator.retry_dead(dead.id)
        await eventually(lambda: state(dead.id, "dead"), what="the retried job to die again")
        await operator.purge_dead(dead.id)

        await operator.create_schedule("tick", "demo.echo", {"tick": True}, every=1.0)
        await eventually(
            lambda: _fired(operator), timeout=10, what="the schedule to fire a job that succeeds"
        )
        await operator.pause("demo.echo")
        await operator.pause("demo.echo", paused=False)

        # A worker's unreadable report is set aside by the reaper; the operator sees and clears it.
        junk, _ = await secure.connect("worker-alpha")
        await junk.jetstream().publish(subjects.outcome("demo.echo", "01KBZ3R6X9T2M0Q7D5W8C4N1HE"), b"{junk")
        await junk.close()

        async def quarantined() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = (await operator.request(subjects.api("doctor.list"), {}))[
                "quarantined"
            ]
            return found

        (entry,) = await eventually(quarantined, what="the report quarantined")
        assert (entry["bucket"], entry["service"]) == ("outcomes", "reaper")
        body = {"bucket": "outcomes", "key": entry["key"]}
        assert (await operator.request(subjects.api("doctor.purge"), body))["purged"]
        assert await quarantined() == []
        assert [w.session for w in await operator.workers()] == ["alpha"]
        await operator.drain("alpha")
        await eventually(lambda: worker.draining, what="the worker to drain")
    assert secure.violations() == []


async def _fired(operator: Client) -> bool:
    last = (await operator.schedule("tick")).last_job_id
    return last is not None and (await operator.get(last)).state == "succeeded"


async def test_tls_requires_a_client_certificate(secure_tls: Secure) -> None:
    """With `verify: true`, valid credentials without a client certificate do not get in."""
    auth = secure_tls.auth("client")
    without_cert = NatsAuth(creds=auth.creds, tls_ca=auth.tls_ca)
    with pytest.raises((NatsError, OSError)):
        async with asyncio.timeout(5), Client(secure_tls.url, timeout=2, auth=without_cert):
            pass


async def test_one_process_per_worker_identity(secure: Secure) -> None:
    """A second process under a worker identity's session stops with a clear error; the first runs on."""
    tasks = _tasks()
    async with running_worker(
        tasks, secure.url, session="alpha", auth=secure.auth("worker-alpha"), name="first"
    ) as first:
        await asyncio.wait_for(first.started.wait(), 10)
        second = Worker(
            tasks, nats_url=secure.url, session="alpha", auth=secure.auth("worker-alpha"), name="second"
        )
        with pytest.raises(SessionConflict, match="already running as session 'alpha'"):
            await asyncio.wait_for(second.run(), 10)
        assert not first.draining  # and leaving the block raises nothing: the first had no conflict


@pytest.mark.slow
async def test_processes_take_identity_and_tls_from_env_and_flags(secure_tls: Secure, tmp_path: Path) -> None:
    """Service and worker processes connect with `JETSCHED_NATS_*`, the CLI with `--creds`/`--tls-*`."""

    def env(role: str) -> dict[str, str]:
        auth = secure_tls.auth(role)
        files = {
            "CREDS": auth.creds,
            "TLS_CA": auth.tls_ca,
            "TLS_CERT": auth.tls_cert,
            "TLS_KEY": auth.tls_key,
        }
        return {f"JETSCHED_NATS_{name}": str(path) for name, path in files.items()}

    fleet = Fleet(secure_tls.url, tmp_path)
    try:
        for name in procs.SERVICES:
            fleet.service(name, env=env(name))
        fleet.worker("--session", "alpha", env=env("worker-alpha"))
        client = secure_tls.auth("client")
        cli = await asyncio.create_subprocess_exec(
            *(
                sys.executable,
                "-m",
                "jetsched.cli",
                "--nats",
                secure_tls.url,
                "--json",
                "--creds",
                str(client.creds),
            ),
            *(
                "--tls-ca",
                str(client.tls_ca),
                "--tls-cert",
                str(client.tls_cert),
                "--tls-key",
                str(client.tls_key),
            ),
            *("--request-timeout", "20s", "submit", "probe.sleep", "--wait"),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(cli.communicate(), 60)
        assert cli.returncode == 0
        assert orjson.loads(out)["job"]["state"] == "succeeded"
    finally:
        fleet.stop()
    assert secure_tls.violations() == []


def test_cli_writes_and_extends_identities(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`security init` writes a seed per role and worker; `add-worker` adds one; a bad name is refused."""
    directory = tmp_path / "creds"
    main(["security", "init", str(directory), "--workers", "a,b"])
    seeds = {path.name for path in directory.glob("*.nk")}
    assert seeds == {f"{role}.nk" for role in security.ROLES} | {"worker-a.nk", "worker-b.nk"}
    before = (directory / "client.nk").read_bytes()
    main(["security", "add-worker", str(directory), "c"])
    assert (directory / "client.nk").read_bytes() == before  # existing identities are kept
    assert "worker-c" in (directory / security.AUTH_CONF).read_text()
    with pytest.raises(SystemExit) as exited:
        main(["security", "add-worker", str(directory), "Not.A.Session"])
    assert exited.value.code == 2
    assert "use 1-63 of a-z 0-9 -" in capsys.readouterr().err


async def test_the_operator_can_follow_the_records_feed(secure: Secure) -> None:
    """The dashboard's live view under secure mode: the operator identity follows the job records'
    feed (headers only, as the dashboard does) and sees a submitted job go by; nothing is refused."""
    from jetsched.bus.connect import connect as jetsched_connect
    from jetsched.bus.feed import RecordFeed

    seen: list[str] = []
    async with _secure_stack(secure), Client(secure.url, auth=secure.auth("operator")) as operator:
        nc = await jetsched_connect(secure.url, "dashboard", secure.auth("operator"))
        feed = RecordFeed(nc, nc.jetstream(), lambda change: seen.append(change.id), headers_only=True)
        try:
            await feed.start()
            job = await operator.submit("demo.echo", {"x": 1})
            await eventually(lambda: job.id in seen, what="the job's change on the operator's feed")
        finally:
            await feed.stop()
            await nc.close()
    assert secure.violations() == []


async def test_a_forged_reply_subject_gets_no_answer(secure: Secure) -> None:
    """NATS checks what a client publishes to, not the reply subject it names — and a service answering
    there (or JetStream, acking a store-acked submit) would publish with the service's permissions. A
    client naming a job record, the JetStream API or the lease bucket as its reply gets nothing done:
    the job runs, the stream stands, no member is made up, and the dispatcher keeps every shard."""
    async with _secured(secure) as (stack, _):
        async with Client(secure.url, auth=secure.auth("client")) as client:
            victim = await client.submit("demo.echo", {"n": 1}, delay=1.0)
            nc, errors = await secure.connect("client")
            try:
                forged = {subjects.REPLY_HEADER: subjects.REPLY_BY_STORE}
                await nc.publish(subjects.submit("demo.echo"), b"{}", reply=f"$KV.jobs.{victim.id}")
                for _ in range(20):
                    await nc.publish(
                        subjects.submit("demo.echo"),
                        b"{}",
                        reply="$KV.leases.dispatcher.member",
                        headers=forged,
                    )
                await nc.publish(subjects.api("jobs.get"), b"{}", reply="$JS.API.STREAM.DELETE.KV_jobs")
                await nc.publish(subjects.submit("demo.echo"), b"{}", reply="_INBOX.*")
                await nc.flush()
            finally:
                await nc.close()
            assert errors == []
            job = await client.wait(victim.id, timeout=20)
            assert (job.state, job.result) == ("succeeded", {"n": 1})
        async with Client(secure.url, auth=secure.auth("operator")) as operator:
            assert (await operator.stats()).jobs == {"succeeded": 1}  # the forged submits made no jobs
        assert keeps_every_shard(stack)  # no made-up member took a share
    assert secure.violations() == [], "the answers were published nowhere (a violation if so)"


def keeps_every_shard(stack: Stack) -> bool:
    (dispatcher,) = stack.of(DispatcherService)
    assert isinstance(dispatcher, DispatcherService)
    return len(dispatcher.owned) == dispatcher.shards


async def test_a_workers_report_cannot_have_its_ack_written_over_a_record(secure: Secure) -> None:
    """A worker publishes outcome reports, and a stream storing them would ack each to the reply subject
    the worker names: a job record's key, a lease member's. Reports are stored by the reapers, which
    answer inboxes only: the record stands, and the dispatcher keeps every shard."""
    async with _secured(secure) as (stack, _):
        async with Client(secure.url, auth=secure.auth("client")) as client:
            victim = await client.submit("demo.echo", {"n": 2}, delay=1.0)
            nc, errors = await secure.connect("worker-alpha")
            try:
                report = subjects.outcome("demo.echo", "01KBZ3R6X9T2M0Q7D5W8C4N1HE")
                await nc.publish(report, b"{}", reply=f"$KV.jobs.{victim.id}")
                for n in range(20):
                    member = f"$KV.leases.dispatcher.member.01jzzzzzzzzzzzzzzzzzzzzz{n:02d}"
                    await nc.publish(report, b"{}", reply=member)
                await nc.flush()
            finally:
                await nc.close()
            assert errors == []
            job = await client.wait(victim.id, timeout=20)
            assert (job.state, job.result) == ("succeeded", {"n": 2})
        assert keeps_every_shard(stack)
