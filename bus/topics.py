"""Topic provisioning: the submit topic(s), ``<prefix>.dead`` and one inbox per agency.

Submit is ``<prefix>.submit``, or with ``CASEBUS_SUBMIT_TOPICS=per_agency`` one
``<prefix>.submit.<agency>`` per agency that writes to the bus (:func:`bus.acl.submitters`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from bus.acl import submitters
from bus.agencies import Registry
from bus.errors import TransportError
from bus.routing import DEFAULT_POLICY_PATH, RoutingPolicy, load_policy
from bus.settings import Settings

__all__ = ["TopicPlan", "ensure_topics", "planned_topics", "submit_topics"]

log = structlog.get_logger("casebus.topics")


@dataclass(frozen=True, slots=True)
class TopicPlan:
    """What ``ensure_topics`` did: topics created now, and those already there."""

    created: list[str]
    existing: list[str]


def submit_topics(
    settings: Settings, registry: Registry, policy: RoutingPolicy | None = None
) -> list[str]:
    """The submit topics of the settings' mode: what parties write and the router reads.

    Per agency, the senders come from ``policy`` (default: the shipped routing policy).
    """
    if settings.submit_topics == "shared":
        return [settings.topic_submit()]
    if policy is None:
        policy = load_policy(DEFAULT_POLICY_PATH, registry)
    return settings.topics_submit(submitters(registry, policy))


def planned_topics(
    settings: Settings, registry: Registry, policy: RoutingPolicy | None = None
) -> list[str]:
    """Every topic the bus needs: submit, dead, then the inboxes in registry order."""
    return [
        *submit_topics(settings, registry, policy),
        settings.topic_dead(),
        *(settings.topic_inbox(a) for a in registry.ids()),
    ]


async def ensure_topics(
    settings: Settings, registry: Registry, policy: RoutingPolicy | None = None
) -> TopicPlan:
    """Create the topics that are missing; a rerun creates nothing."""
    wanted = planned_topics(settings, registry, policy)
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            # The dead-letter topic keeps what could not be delivered for a long time.
            configs = {settings.topic_dead(): {"retention.ms": str(90 * 24 * 3600 * 1000)}}
            new = [
                NewTopic(
                    name=t,
                    num_partitions=settings.topic_partitions,
                    replication_factor=settings.topic_replication,
                    topic_configs={
                        "min.insync.replicas": str(min(2, settings.topic_replication)),
                        **configs.get(t, {}),
                    },
                )
                for t in missing
            ]
            # Another process may win the race; what matters is that the topics exist.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
            for t in missing:
                log.info("topics.created", topic=t, partitions=settings.topic_partitions)
        return TopicPlan(created=missing, existing=[t for t in wanted if t in existing])
    except KafkaError as e:
        raise TransportError(f"topic provisioning failed: {e}", retriable=True) from e
    finally:
        await admin.close()
