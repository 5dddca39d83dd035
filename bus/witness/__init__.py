"""A C2SP tlog-witness (c2sp.org/tlog-witness) that casebus's parties run to vouch for the
audit log: it cosigns a checkpoint only if it is consistent with the last one it cosigned."""

from bus.witness.protocol import Answer, LogState
from bus.witness.service import ROUTE_ACCESS, Witness, create_app, logs_by_origin
from bus.witness.store import MemoryWitnessStore, SqliteWitnessStore, WitnessStore

__all__ = [
    "ROUTE_ACCESS",
    "Answer",
    "LogState",
    "MemoryWitnessStore",
    "SqliteWitnessStore",
    "Witness",
    "WitnessStore",
    "create_app",
    "logs_by_origin",
]
