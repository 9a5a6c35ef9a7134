"""E-mail to a real SMTP server (aiosmtpd) and to the outbox folder."""

from __future__ import annotations

import asyncio
import contextlib
import email
import socket
import time
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiosmtpd.controller import Controller

from services.notifier.jobs import DeliveryJob, alert_jobs
from services.notifier.queue import DeliveryQueue
from shared.links import verify_link
from shared.storage import SubscriptionStore
from shared.subscription import Channels
from tests.integration.notifier.conftest import running, stream_results, wait_for
from tests.unit.notifier.notifier_papers import hf_papers, items, subscription


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted for delivery"


@contextlib.contextmanager
def smtp(inbox: Inbox) -> Iterator[int]:
    """A real SMTP server (aiosmtpd) on a free local port, answering with ``inbox``'s hooks."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    with smtp(inbox) as port:
        yield inbox, port


async def test_smtp_mail_parses_escapes_and_unsubscribes(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path, smtp_server
) -> None:
    inbox, port = smtp_server
    paper = hf_papers(fixtures_dir)[0]
    hostile = paper.model_copy(
        update={"title": "<script>alert(1)</script>\r\nBcc: victim@example.org\r\n" + paper.title}
    )
    sub = subscription()
    await SubscriptionStore(redis).put(sub)
    (job,) = alert_jobs(sub, items([hostile])[0])
    queue = DeliveryQueue(redis)
    await queue.enqueue(job, time.time())
    settings = settings_for(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)
    async with running(settings) as worker:
        await wait_for(lambda: len(inbox.messages) == 1)

        async def recorded() -> bool:
            return len(await stream_results(redis)) == 1

        await wait_for(recorded)  # the first delivery is finished and out of the queue
        # the same delivery queued again (a replayed match) is recognised and not mailed twice
        await queue.enqueue(job.model_copy(), time.time())
        await asyncio.sleep(0.3)
        await worker.drain()
    assert len(inbox.messages) == 1
    mail_from, rcpt, raw = inbox.messages[0]
    assert rcpt == ["ada@example.org"] and mail_from == "alerts@paperwire.localhost"
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed.is_multipart() and parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["Bcc"] is None
    assert parsed["Subject"].startswith("[paperwire] <script>alert(1)</script> Bcc: victim@example.org Beyond")
    html = parsed.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = parsed["List-Unsubscribe"].strip("<>")
    assert url.startswith("http://127.0.0.1:8000/v1/unsubscribe/")
    # as received, not as a decoding parser shows it: RFC 2369 wants the plain <URL>, not RFC 2047 encoded words
    assert f"\r\nList-Unsubscribe: <{url}>\r\n".encode() in raw
    link = verify_link("integration-link-secret", url.rsplit("/", 1)[1])
    assert link["action"] == "unsubscribe" and link["subscription_id"] == sub.id
    assert parsed["Message-ID"] == f"<{job.id}@paperwire.localhost>"
    assert [r["status"] for r in await stream_results(redis)] == ["delivered", "duplicate"]


async def test_without_smtp_mail_goes_to_the_outbox(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path, tmp_path: Path
) -> None:
    sub = subscription()
    await SubscriptionStore(redis).put(sub)
    jobs = [j for item in items(hf_papers(fixtures_dir)) for j in alert_jobs(sub, item)]
    for job in jobs:
        await DeliveryQueue(redis).enqueue(job, time.time())
    settings = settings_for()
    async with running(settings):
        await wait_for(lambda: len(list(settings.outbox_dir.glob("*.eml"))) == 3)
    files = sorted(settings.outbox_dir.glob("*.eml"))
    assert sorted(f.stem for f in files) == sorted(j.id for j in jobs)
    subjects = sorted(email.message_from_bytes(f.read_bytes(), policy=policy.default)["Subject"] for f in files)
    title = "Beyond Semantic Similarity: Rethinking Retrieval for Agentic Search via Direct Corpus Interaction"
    assert subjects[0] == f"[paperwire] {title}"


class Refusing(Inbox):
    """``nobody@`` is unknown for good (550 5.1.1), ``later@`` is greylisted (451): RFC 5321's two kinds."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address.startswith("nobody@"):
            return "550 5.1.1 user unknown"
        if address.startswith("later@"):
            return "451 4.7.1 greylisted, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


async def alert_to(redis: aioredis.Redis, queue: DeliveryQueue, name: str, fixtures_dir: Path) -> DeliveryJob:
    """An instant subscription e-mailing ``name@example.org``, stored, and its alert for a real paper queued."""
    sub = subscription(id=name, channels=Channels(email=f"{name}@example.org"))
    await SubscriptionStore(redis).put(sub)
    (job,) = alert_jobs(sub, items(hf_papers(fixtures_dir)[:1])[0])
    await queue.enqueue(job, time.time())
    return job


async def test_permanent_smtp_refusal_fails_at_once_and_temporary_is_retried(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path
) -> None:
    inbox = Refusing()
    with smtp(inbox) as port:
        queue = DeliveryQueue(redis)
        jobs = {}
        for name in ("nobody", "later"):
            jobs[name] = await alert_to(redis, queue, name, fixtures_dir)
        settings = settings_for(
            smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False, webhook_retry_schedule_s=[0.1, 0.1]
        )
        async with running(settings) as worker:

            async def both_settled() -> bool:
                return await redis.xlen("deliveries.failed") == 1 and await queue.pending() == 0

            await wait_for(both_settled)
            await worker.drain()
    results = await stream_results(redis)
    nobody = [(r["status"], r["status_code"], r["attempts"]) for r in results if r["subscription_id"] == "nobody"]
    assert nobody == [("failed", 550, 1)]  # one attempt, not the retry schedule
    later = [(r["status"], r["status_code"]) for r in results if r["subscription_id"] == "later"]
    assert later == [("failed", 451), ("failed", 451), ("dead", 451)]
    assert [j.id for j in await queue.dead_jobs()] == [jobs["later"].id]
    assert inbox.messages == []


class SlowInbox(Inbox):
    """Holds every message a moment, counting the SMTP sessions in DATA at once."""

    def __init__(self) -> None:
        super().__init__()
        self.now = self.most = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.now += 1
        self.most = max(self.most, self.now)
        await asyncio.sleep(0.2)
        self.now -= 1
        return await super().handle_DATA(server, session, envelope)


async def test_email_concurrency_bounds_the_process_not_each_recipient(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path
) -> None:
    """``NOTIFIER_EMAIL_CONCURRENCY`` is SMTP sessions at once: 6 recipients with a limit of 2 get 2 at a time."""
    inbox = SlowInbox()
    with smtp(inbox) as port:
        queue = DeliveryQueue(redis)
        for index in range(6):
            await alert_to(redis, queue, f"reader{index}", fixtures_dir)
        settings = settings_for(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False, email_concurrency=2)
        async with running(settings) as worker:
            await wait_for(lambda: len(inbox.messages) == 6)
            await worker.drain()
    assert inbox.most <= 2
    assert sorted(rcpt for _sender, [rcpt], _raw in inbox.messages) == [f"reader{i}@example.org" for i in range(6)]
