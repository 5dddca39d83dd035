"""Figures of a run (for the progress line and the summary) and the check of its outcomes."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from bus.audit.log import AuditLog
from bus.audit.verify import VerifyReport, verify_log
from bus.audit.witnessing import cosigned_note
from bus.signing import algorithm_of_profile
from bus.sim.fortnight import Expected
from bus.sim.world import PROCURATORATE, World
from bus.trace import messages_by_kind

__all__ = ["Pulse", "Summary", "pulse", "summarize"]


@dataclass(frozen=True)
class Pulse:
    """The progress line: how far the run is."""

    messages: int
    open_deadlines: int
    warnings: int
    breaches: int


async def pulse(pool: asyncpg.Pool, since: datetime) -> Pulse:
    """Messages accepted and deadlines of this run so far."""
    row = await pool.fetchrow(
        """
        SELECT (SELECT count(*) FROM router_accepted WHERE accepted_at >= $1) AS messages,
               count(*) FILTER (WHERE state = 'open') AS open,
               coalesce(sum(warnings_sent), 0) AS warnings,
               count(*) FILTER (WHERE state = 'breached' OR breach_emitted_at IS NOT NULL)
                   AS breaches
        FROM sla_deadlines WHERE created_at >= $1
        """,
        since,
    )
    assert row is not None
    return Pulse(row["messages"], row["open"], row["warnings"], row["breaches"])


@dataclass
class Summary:
    """What the run did, and which expected outcomes are missing."""

    kinds: Counter[str]
    deadlines: list[dict[str, Any]]
    """(agency, policy, met, breached, open) rows."""
    audit_entries: int
    verify: VerifyReport
    monitor_heads: int
    monitor_alarms: int
    cosigned: str
    """The largest checkpoint every witness cosigned (by verify_log's check with their keys),
    as a signed note with their lines; "" if none."""
    screening: list[str]
    flows: dict[str, str]
    signatures: Counter[str] = field(default_factory=Counter)
    """The messages the router accepted, by the algorithm of the key their signature verified
    with (their audit entries say)."""
    profile: str = "ed25519"
    """The crypto profile the run's keys were made for."""
    missing: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary as printed."""
        out = ["", "== messages by kind"]
        out += [f"  {kind:<36} {n:>5}" for kind, n in sorted(self.kinds.items())]
        out.append(f"  {'total':<36} {sum(self.kinds.values()):>5}")
        out.append("== deadlines by agency (met / breached / open)")
        for row in self.deadlines:
            out.append(
                f"  {row['agency']:<28} {row['policy']:<34} "
                f"met {row['met']:>3}  breached {row['breached']:>3}  open {row['open']:>3}"
            )
        out.append(f"== signatures the router verified (crypto profile {self.profile})")
        out += [f"  {alg:<36} {n:>5}" for alg, n in sorted(self.signatures.items())]
        out.append("== audit log")
        out.append(f"  audit log size: {self.audit_entries} entries")
        out.append(f"  verify_log: {self.verify.line()}")
        if self.cosigned:
            out.append("  the latest checkpoint every witness cosigned:")
            out += [f"    {line}" for line in self.cosigned.splitlines()]
        else:
            out.append("  no checkpoint is cosigned by every witness")
        out.append(
            f"  audit monitor: {self.monitor_heads} tree heads checked, "
            f"{self.monitor_alarms} alarms"
        )
        out.append("== procuratorate screening (以罚代刑)")
        out += [f"  penalty instead of transfer: {case}" for case in self.screening] or [
            "  penalty instead of transfer: none found"
        ]
        out.append("== cases to trace (casebus trace CASE_ID)")
        out += [f"  {name:<52} {case}" for name, case in self.flows.items()]
        out.append("== outcome")
        if self.missing:
            out += [f"  MISSING: {m}" for m in self.missing]
        else:
            out.append("  every expected outcome is present")
        return out


_EXPECTED_KINDS = (
    "clue.handover",
    "clue.receipt",
    "opinion.request",
    "opinion.response",
    "opinion.delegated",
    "penalty.feedback",
    "criminal.transfer",
    "criminal.receipt",
    "criminal.filing_decision",
    "criminal.jurisdiction_forward",
    "criminal.reconsideration_request",
    "criminal.reconsideration_decision",
    "criminal.evidence_handover",
    "supervision.request",
    "supervision.notice",
    "obstruction.report",
    "court.execution_application",
    "court.acceptance",
    "court.ruling",
    "sla.warning",
    "sla.breach",
    "sla.met",
)


async def signatures_verified(pool: asyncpg.Pool, *, since: datetime) -> Counter[str]:
    """The messages the router accepted since ``since``, by the algorithm of the registry key
    their signature verified with (each accepted entry's leaf names it)."""
    rows = await pool.fetch(
        "SELECT leaf FROM audit_entries WHERE event_kind = 'accepted' AND recorded_at >= $1",
        since,
    )
    return Counter(str(json.loads(bytes(r["leaf"]))["signing_key"]["algorithm"]) for r in rows)


async def _cosigned(pool: asyncpg.Pool, report: VerifyReport) -> str:
    """The checkpoint verify_log found cosigned by every witness, with their lines; ""."""
    size = report.witnessing.witnessed_size if report.witnessing is not None else 0
    checkpoint = await AuditLog().checkpoint(pool, size) if size else None
    return "" if checkpoint is None else await cosigned_note(pool, checkpoint)


async def summarize(world: World, expected: Expected, since: datetime) -> Summary:
    """Count what happened since ``since`` and check it against ``expected``."""
    pool = world.pool
    kinds = await messages_by_kind(pool, since=since)
    rows = await pool.fetch(
        """
        SELECT owner_agency AS agency, policy_id AS policy,
               count(*) FILTER (WHERE state = 'met') AS met,
               count(*) FILTER (WHERE state = 'breached') AS breached,
               count(*) FILTER (WHERE state = 'open') AS open
        FROM sla_deadlines WHERE created_at >= $1
        GROUP BY 1, 2 ORDER BY 1, 2
        """,
        since,
    )
    breached = {
        (r["policy_id"], r["owner_agency"], r["case_id"])
        for r in await pool.fetch(
            "SELECT policy_id, owner_agency, case_id FROM sla_deadlines"
            " WHERE state = 'breached' AND created_at >= $1",
            since,
        )
    }
    entries = await pool.fetchval("SELECT count(*) FROM audit_entries")
    signatures = await signatures_verified(pool, since=since)
    # Held to the witnesses' keys, as a verifier outside the bus would (casebus audit verify
    # --witness ... for each): a checkpoint counts only with every witness's valid cosignature.
    witnesses = tuple(w.key for w in world.witnesses)
    report = await verify_log(
        pool, log_key=world.log_key, origin=world.settings.audit_origin, witnesses=witnesses
    )
    cosigned = await _cosigned(pool, report)
    heads = await pool.fetchval("SELECT count(*) FROM monitor_checkpoints")
    alarms = await pool.fetchval("SELECT count(*) FROM monitor_alarms")
    dept = world.proc.department(PROCURATORATE)
    r = await dept.client.get("/v1/screening/penalty-instead-of-transfer", headers=dept.headers)
    r.raise_for_status()
    found = [str(f["case_id"]) for f in r.json()["penalty_instead_of_transfer"]]
    summary = Summary(
        kinds=kinds,
        deadlines=[dict(r) for r in rows],
        audit_entries=int(entries),
        verify=report,
        monitor_heads=int(heads),
        monitor_alarms=int(alarms),
        cosigned=cosigned,
        screening=found,
        flows=dict(expected.flows),
        signatures=signatures,
        profile=world.settings.crypto_profile,
    )
    missing = summary.missing
    missing += [f"no {kind} message" for kind in _EXPECTED_KINDS if not kinds.get(kind)]
    missing += [
        f"no breach of {p} by {a} on {c}"
        for p, a, c in expected.breaches
        if (p, a, c) not in breached
    ]
    if not any(row["met"] for row in summary.deadlines):
        missing.append("no deadline met")
    if not report.ok:
        missing.append(f"the audit log does not verify: {report.line()}")
    profile_algorithm = algorithm_of_profile(world.settings.crypto_profile)
    missing += [
        f"{n} message(s) signed with {alg} under the {world.settings.crypto_profile} profile"
        for alg, n in sorted(signatures.items())
        if alg != profile_algorithm
    ]
    if not signatures.get(profile_algorithm):
        missing.append(f"no message signed with {profile_algorithm}")
    if witnesses and not cosigned:
        missing.append("no checkpoint is cosigned by every witness")
    if not summary.monitor_heads or summary.monitor_alarms:
        missing.append("the audit monitor checked no tree head, or raised an alarm")
    if expected.planted_case not in found:
        missing.append(f"the screening missed the planted 以罚代刑 case {expected.planted_case}")
    if expected.transferred_suspect in found:
        missing.append(f"the screening listed the transferred {expected.transferred_suspect}")
    failed = world.failed()
    missing += [f"component stopped: {name}" for name in failed]
    return summary
