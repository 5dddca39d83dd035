"""The running parts of one adapter: pool, signers, outbox relays, inbox readers, deliverers."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import asyncpg
import structlog

from adapters._framework.attachments import default_store, referencing
from adapters._framework.checks import DeadlineRules
from adapters._framework.config import AdapterConfig
from adapters._framework.inbound import Submitter
from adapters._framework.outbound import Settler, inbox_handler
from adapters._framework.webhooks import WebhookDeliverer, record_lateness
from bus.attachments import AttachmentStore
from bus.codec import default_codec
from bus.db import create_pool
from bus.errors import ConfigError
from bus.inbox import InboxReader
from bus.lifecycle import BackgroundService, Backoff
from bus.outbox import OutboxRelay
from bus.provision import OwnKey, ensure_registered
from bus.settings import Settings
from bus.signing import load_signer

if TYPE_CHECKING:
    from adapters._framework.spec import AdapterSpec

__all__ = ["AdapterService"]

log = structlog.get_logger("casebus.adapter")

_KEYS_VALID_FROM = datetime(2020, 1, 1, tzinfo=UTC)

_READER_RESTART: Final = Backoff(initial_s=1.0, max_s=30.0)
"""After an inbox reader gave up: wait, then start a new one."""


class _WakeAfterCommit:
    """Wakes a deliverer after the reader's transaction that stored a delivery commits.

    Woken from the inbox handler, inside that transaction, the deliverer looked for the row
    before it was committed, found nothing due and slept out its poll interval (0.5 s by
    default) unless another message woke it: deliveries waited for the next message or the
    poll (a p99 of 517 ms from stored to answered in the soak at 20/s). A transaction that
    rolls back leaves the note for the next commit: one query more, nothing missed."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._stored = False

    def stored(self, _agency_id: str) -> None:
        self._stored = True

    def committed(self) -> None:
        if self._stored:
            self._stored = False
            self._wake()


class AdapterService(BackgroundService):
    """Everything behind one adapter's HTTP API, built from its spec; ``async with`` runs it.
    :meth:`start` and :meth:`stop` are idempotent."""

    def __init__(
        self,
        settings: Settings,
        config: AdapterConfig,
        *,
        spec: AdapterSpec,
        run_relay: bool = True,
        run_readers: bool = True,
        relay_settings: Settings | None = None,
    ) -> None:
        super().__init__(task_name=f"casebus-adapter-{config.adapter_kind}")
        self.settings = settings
        self.config = config
        self.spec = spec
        self.vocabulary = spec.vocabulary
        self.sends = list(spec.sends)
        self.receives = list(spec.receives)
        self.rules = DeadlineRules.from_settings(settings)
        """The deadline policies and calendar of ``settings``, as the SLA engine counts."""
        self._run_relay = run_relay
        self._run_readers = run_readers
        self._relay_settings = relay_settings or settings
        self._codec = default_codec()
        self._pool: asyncpg.Pool | None = None
        self._relays: dict[str, OutboxRelay] = {}
        self._deliverers: dict[str, WebhookDeliverer] = {}
        self.signers = {
            a.agency_id: load_signer(a.key_file, agency_id=a.agency_id) for a in config.agencies
        }
        # Valid from well before any document an agency may still send: the keys are the
        # agencies', registered by the operator (`casebus agency key add`), not the adapter.
        self.own_keys = tuple(
            OwnKey.of(self.signers[a.agency_id], a.key_file, valid_from=_KEYS_VALID_FROM)
            for a in config.agencies
        )
        self.settler = Settler(
            settings,
            signers=self.signers,
            codec=self._codec,
            on_commit=self._woke,
            clock=config.clock,
        )
        self._submitter: Submitter | None = None
        self.attachments: AttachmentStore = default_store(self)
        """Where uploaded case files are kept (bus.attachments)."""
        self.started = False

    @property
    def relay_bootstrap(self) -> str:
        """The Kafka bootstrap the outbox relays publish to."""
        return self._relay_settings.kafka_bootstrap

    @property
    def pool(self) -> asyncpg.Pool:
        """The database pool (after :meth:`start`)."""
        if self._pool is None:
            raise ConfigError("the adapter service is not started")
        return self._pool

    @property
    def submitter(self) -> Submitter:
        """Checks and queues submissions (after :meth:`start`)."""
        if self._submitter is None:
            raise ConfigError("the adapter service is not started")
        return self._submitter

    def _woke(self, agency_id: str) -> None:
        relay = self._relays.get(agency_id)
        if relay is not None:
            relay.wake()

    def _stored(self, agency_id: str) -> None:
        deliverer = self._deliverers.get(agency_id)
        if deliverer is not None:
            deliverer.wake()

    async def start(self) -> None:
        """Connect, check the agencies' keys are registered (the operator's job: the router
        trusts them, so casebus_adapter may not write them), start relays, readers and
        deliverers."""
        if self.started:
            return
        # Generic plans: every statement of an adapter is an index lookup under any plan (the
        # audit trail's proofs too, bus.audit.log), and planning the head-of-case and
        # settling statements anew each time cost PostgreSQL more than running them.
        self._pool = await create_pool(
            self.settings.database_url,
            min_size=1,
            max_size=self.config.db_pool_max_size,
            plan_every_call=False,
        )
        try:
            async with self._pool.acquire() as conn:
                await ensure_registered(conn, registry=None, keys=self.own_keys)
        except BaseException:
            await self._pool.close()
            self._pool = None
            raise
        self._submitter = Submitter(
            self.settings,
            vocabulary=self.vocabulary,
            sends=self.sends,
            signers=self.signers,
            pool=self._pool,
            codec=self._codec,
            on_commit=self._woke,
            clock=self.config.clock,
            attachments=self.attachments,
            checks=self.spec.checks,
            rules=self.rules,
        )
        for endpoint in self.config.agencies:
            agency = endpoint.agency_id
            if self._run_relay:
                relay = OutboxRelay(
                    self._relay_settings,
                    pool=self._pool,
                    owner=agency,
                    poll_interval_s=self.config.relay_poll_interval_s,
                    backoff_max_s=2.0,
                    request_timeout_ms=5000,
                )
                self._relays[agency] = relay
                await relay.start()
            if endpoint.webhook_url:
                self._deliverers[agency] = WebhookDeliverer(
                    endpoint, config=self.config, pool=self._pool, settler=self.settler
                )
        await super().start()
        self.started = True
        log.info("adapter.started", kind=self.config.adapter_kind, agencies=self.config.agency_ids)

    async def run(self) -> None:
        """Every agency's webhook deliverer (or pull lateness watch) and inbox reader, until
        stopped. Each logs and outlives its own failures; whatever one still raised is
        dropped, as it always was."""
        loops = []
        for agency in self.config.agency_ids:
            deliverer = self._deliverers.get(agency)
            loops.append(deliverer.run() if deliverer is not None else self._watch_pull(agency))
            if self._run_readers:
                loops.append(self._read(agency))
        await asyncio.gather(*loops, return_exceptions=True)

    async def _read(self, agency_id: str) -> None:
        """Keep the adapter's inbox reader running, and the spec's extra readers beside it."""
        extra = [
            self.keep_reading(agency_id, functools.partial(make, self, agency_id))
            for make in self.spec.readers
        ]
        await asyncio.gather(self._deliveries(agency_id), *extra)

    async def _deliveries(self, agency_id: str) -> None:
        """Keep the reader storing the agency's messages as pending deliveries running; the
        agency's deliverer is woken once a transaction that stored one has committed."""
        wake = _WakeAfterCommit(lambda: self._stored(agency_id))
        await self.keep_reading(
            agency_id,
            lambda: InboxReader(
                self.settings,
                agency_id=agency_id,
                consumer_name=f"adapter.{agency_id}",
                handler=referencing(
                    agency_id,
                    inbox_handler(
                        agency_id,
                        vocabulary=self.vocabulary,
                        codec=self._codec,
                        on_stored=wake.stored,
                    ),
                ),
                pool=self.pool,
                codec=self._codec,
                poll_timeout_ms=200,
                on_committed=wake.committed,
            ),
        )

    async def keep_reading(self, agency_id: str, make: Callable[[], InboxReader]) -> None:
        """Keep a reader made by ``make`` running until the service stops; one that gave up (its
        handler failed too often, e.g. while PostgreSQL was away) is replaced after a pause."""
        failures = 0
        while not self.stopping:
            reader = make()
            task = asyncio.create_task(reader.run())
            stop = asyncio.create_task(self._stopping.wait())
            done, _ = await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if task not in done:
                await reader.stop()  # run() was awaited directly: this only asks it to end
            try:
                await task
                failures = 0
            except Exception as e:  # the reader gave up: log, pause, start a new one
                failures += 1
                log.warning("adapter.reader_failed", agency=agency_id, error=f"{e!r}")
                await self.pause(_READER_RESTART.delay(failures))

    async def _watch_pull(self, agency_id: str) -> None:
        """Lateness metrics for a pull agency."""
        while not self.stopping:
            try:
                await record_lateness(self.pool, agency_id, self.config.max_wait_s)
            except Exception as e:
                log.warning("adapter.lateness_failed", agency=agency_id, error=f"{e!r}")
            await self.pause(self.config.lateness_interval_s)

    def request_stop(self) -> None:
        """Ask every loop of the service, the webhook deliverers' too, to finish and return."""
        super().request_stop()
        for deliverer in self._deliverers.values():
            deliverer.stop()

    async def stop(self) -> None:
        """Stop everything started, then close the pool."""
        if not self.started:
            return
        await super().stop()
        for relay in self._relays.values():
            await relay.stop()
        self._relays.clear()
        self._deliverers.clear()
        await self.attachments.aclose()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        self.started = False
        log.info("adapter.stopped", kind=self.config.adapter_kind)
