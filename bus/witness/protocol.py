"""The decisions of a C2SP tlog-witness (c2sp.org/tlog-witness), as pure functions.

``POST /add-checkpoint`` carries ``old <size>``, up to 63 base64 consistency-proof lines, a
blank line and the log's signed checkpoint note. What the witness answers depends only on the
request, the log keys it trusts and the latest checkpoint it cosigned for that origin, so all
of it is decided here and a millisecond test can walk every answer:

* 400: the request or the checkpoint is malformed, or the old size exceeds the new one;
* 404: the origin is not a log this witness knows;
* 403: no signature on the checkpoint verifies with a key the witness trusts for the origin;
* 409: the old size is not the latest cosigned size (the body, ``text/x.tlog.size``, says
  which is), or the sizes are equal and the roots differ;
* 422: the consistency proof from the latest cosigned tree to the new one does not verify;
* 200: cosign; the caller must persist the new state before it answers.

The checkpoint is read leniently beyond its first three lines: the witness vouches for the
origin, size and root only, and the spec lets logs add extension lines it does not interpret.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bus.audit.checkpoint import VerifierKey, parse_note, verify_note
from bus.audit.merkle import verify_consistency
from bus.errors import CheckpointError, ProofError

__all__ = [
    "MAX_PROOF_LINES",
    "MAX_REQUEST_BYTES",
    "SIZE_CONTENT_TYPE",
    "AddCheckpoint",
    "Answer",
    "CheckpointHead",
    "LogState",
    "judge_consistency",
    "judge_signatures",
    "parse_add_checkpoint",
    "parse_checkpoint_head",
]

MAX_PROOF_LINES = 63
"""A client must not send more consistency-proof lines than this (the spec's bound)."""

MAX_REQUEST_BYTES = 1 << 20
"""A larger body is refused before it is parsed."""

SIZE_CONTENT_TYPE = "text/x.tlog.size"
"""Content type of a 409 answer whose body is the latest cosigned size."""

_MAX_SIZE = 2**63 - 1  # the store keeps sizes as SQLite integers
_DECIMAL = re.compile(r"0|[1-9][0-9]*", re.ASCII)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the witness says: an HTTP status, a text body and its content type."""

    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


def _bad(detail: str) -> Answer:
    return Answer(400, detail + "\n")


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """A parsed add-checkpoint request."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str


@dataclass(frozen=True, slots=True)
class CheckpointHead:
    """What a witness reads from a checkpoint: origin, size, root, and the signed body."""

    origin: str
    size: int
    root_hash: bytes
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class LogState:
    """The latest checkpoint a witness cosigned for one origin."""

    size: int
    root_hash: bytes
    note: str = field(default="", repr=False)


def _size(text: str, what: str) -> int | Answer:
    if not _DECIMAL.fullmatch(text) or int(text) > _MAX_SIZE:
        return _bad(f"{what} {text[:40]!r} is not a decimal size without leading zeros")
    return int(text)


def _hash(text: str, what: str) -> bytes | Answer:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return _bad(f"{what} is not base64")
    if len(raw) != 32 or base64.b64encode(raw).decode("ascii") != text:
        return _bad(f"{what} is not a canonical base64 SHA-256 hash")
    return raw


def parse_add_checkpoint(body: bytes) -> AddCheckpoint | Answer:
    """The request, or a 400 answer saying what is wrong with it."""
    if len(body) > MAX_REQUEST_BYTES:
        return _bad(f"request is larger than {MAX_REQUEST_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _bad("request is not UTF-8")
    head, sep, note = text.partition("\n\n")
    if not sep:
        return _bad("request has no blank line before the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        return _bad("request does not start with an 'old <size>' line")
    old = _size(lines[0].removeprefix("old "), "old size")
    if isinstance(old, Answer):
        return old
    if len(lines) - 1 > MAX_PROOF_LINES:
        return _bad(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof: list[bytes] = []
    for number, line in enumerate(lines[1:], start=1):
        h = _hash(line, f"proof line {number}")
        if isinstance(h, Answer):
            return h
        proof.append(h)
    return AddCheckpoint(old, tuple(proof), note)


def parse_checkpoint_head(note: str) -> CheckpointHead | Answer:
    """The head of the checkpoint in a signed ``note``, or a 400 answer."""
    try:
        text, _ = parse_note(note)
    except CheckpointError as e:
        return _bad(f"checkpoint is not a signed note: {e}")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or not all(lines):
        return _bad("checkpoint has fewer than three lines or an empty line")
    size = _size(lines[1], "checkpoint size")
    if isinstance(size, Answer):
        return size
    root = _hash(lines[2], "checkpoint root hash")
    if isinstance(root, Answer):
        return root
    return CheckpointHead(lines[0], size, root, text.encode("utf-8"))


def judge_signatures(
    note: str, head: CheckpointHead, logs: Mapping[str, Sequence[VerifierKey]]
) -> Answer | None:
    """404 for an unknown origin, 403 when no trusted key signed the note, else None."""
    keys = logs.get(head.origin)
    if keys is None:
        return Answer(404, f"unknown log origin {head.origin!r}\n")
    for key in keys:
        try:
            verify_note(note, key.name, key.public_key)
        except CheckpointError:
            continue
        return None
    return Answer(403, f"no signature by a key trusted for {head.origin!r} verifies\n")


def judge_consistency(
    latest: LogState | None, request: AddCheckpoint, head: CheckpointHead
) -> Answer | None:
    """None when the witness may cosign ``head``; otherwise the refusal.

    Must run atomically with persisting ``head`` as the new latest state, or two requests
    racing could roll the witness back (the spec's example)."""
    if request.old_size > head.size:
        return _bad(f"old size {request.old_size} is larger than checkpoint size {head.size}")
    have = latest.size if latest is not None else 0
    if request.old_size != have:
        return Answer(409, f"{have}\n", SIZE_CONTENT_TYPE)
    if latest is None or latest.size == 0:
        if request.proof:
            return Answer(422, "the consistency proof from size 0 must be empty\n")
        return None
    if head.size == latest.size:
        if head.root_hash != latest.root_hash:
            return Answer(409, f"{have}\n", SIZE_CONTENT_TYPE)
        if request.proof:
            return Answer(422, "the consistency proof between equal sizes must be empty\n")
        return None
    try:
        verify_consistency(
            latest.size, head.size, latest.root_hash, head.root_hash, list(request.proof)
        )
    except ProofError as e:
        return Answer(422, f"consistency proof from {latest.size} does not verify: {e}\n")
    return None
