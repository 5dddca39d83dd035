"""Seeded sample payloads and signed envelopes of every message kind: tests, benchmarks, the demo.

Samples read like Yangzonghai case work — illegal building on the lakeshore, sand mining, arsenic
in the lake, unlicensed food stalls, farmland taken for yards, dumped rubble — with redacted
fictional parties (张某某, 昆明某某建材有限公司) whose ID numbers and credit codes pass their check
digits, document numbers such as ``阳城执罚〔2026〕第0123号``, money in fen and times in UTC. All
randomness comes from the caller's ``random.Random``: the same seed gives the same sample. By
default a sample happens at an office hour of the fortnight from 2 March 2026 (:func:`sample_time`)
and its events lie shortly before that ``now``, its deadlines after it.

Overrides. ``sample_payload(kind, rng, **overrides)`` takes any field of the kind's model by
name and replaces it; what follows from it follows too. These steer the derived fields:

- ``decision`` (criminal.filing_decision ``FILED``/``NOT_FILED``; criminal.reconsideration_decision
  ``MAINTAIN_REFUSAL``/``FILE_CASE``; clue.receipt ``ACCEPTED``/``REJECTED``; court.acceptance
  ``ACCEPTED``/``NOT_ACCEPTED``), ``ruling`` (court.ruling ``EXECUTE``/``NOT_EXECUTE``): a refusal
  brings its reasons (and returned materials), an acceptance its case number. Defaults are drawn
  with realistic odds, so pass the outcome a flow needs.
- ``status`` (criminal.case_update), ``notice_type`` (supervision.notice: ``EXPLAIN_REFUSAL`` is
  due in 7 days, ``FILE_CASE`` in 15), ``obstruction_type`` (obstruction.report), ``code``
  (bus.nack: the reasons fit it), ``policy_id`` (sla.*: owner and waiting agency fit it),
  ``original_kind`` (bus.delivered), ``origin`` / ``tree_size`` / ``root_hash`` / ``issued_at``
  (audit.tree_head: the signed checkpoint is made of them), ``transfer_letter_no``
  (supervision.notice quotes it), ``court_case_no`` (court.ruling: also its ruling number).
- ``due_at`` (opinion.request; ``None`` asks without a deadline), ``hearing_required``
  (court.acceptance) and every other field are plain replacements.

Options beyond the fields, per kind, are listed in :data:`SAMPLE_OPTIONS`:

- ``now`` (every kind): the aware instant the sample is made at.
- ``scenario``: one of :data:`SCENARIOS` (``illegal_construction``, ``illegal_sand_mining``,
  ``sewage_discharge``, ``unlicensed_food_stall``, ``illegal_land_occupation``,
  ``illegal_dumping``); criminal kinds take only those naming an offence.
- ``regulator`` (clue.*, opinion.*, penalty.feedback): the regulator's agency id; picks a
  violation in its field and its document numbers. :func:`sample_envelope` fills it in from the
  sender or recipients.
- ``suspected_crime`` (penalty.feedback): flag the first decision as a suspected crime, a fine
  for a violation that names an offence (the 以罚代刑 signal); ``decision_count``: how many.
- ``omit_documents`` (criminal.transfer): transfer document types to leave out of the manifest.
- ``audit_key`` (audit.tree_head): the Ed25519 key to sign the checkpoint with, instead of
  :func:`sample_audit_key`.

Attachments. Payloads refer to documents by name and SHA-256; a document's fake bytes depend on
its name alone (:func:`document_bytes`), so :func:`sample_attachments` rebuilds the matching
envelope attachments from the payload. :func:`sample_envelope` puts it all together and signs.

Routes. :data:`SAMPLE_ROUTES` gives each kind a typical sender and recipients the routing policy
allows; :func:`refused_route` one it refuses.
"""

from __future__ import annotations

from bus.samples._agencies import SAMPLE_ROUTES, refused_route
from bus.samples._build import SAMPLE_OPTIONS, sample, sample_envelope, sample_payload
from bus.samples._bus import AUDIT_ORIGIN, sample_audit_key
from bus.samples._context import sample_case_id, sample_time
from bus.samples._documents import (
    DOCS_BASE_URI,
    document_bytes,
    document_sha256,
    sample_attachments,
    sample_ref,
)
from bus.samples._scenarios import SCENARIOS, Scenario

__all__ = [
    "AUDIT_ORIGIN",
    "DOCS_BASE_URI",
    "SAMPLE_OPTIONS",
    "SAMPLE_ROUTES",
    "SCENARIOS",
    "Scenario",
    "document_bytes",
    "document_sha256",
    "refused_route",
    "sample",
    "sample_attachments",
    "sample_audit_key",
    "sample_case_id",
    "sample_envelope",
    "sample_payload",
    "sample_ref",
    "sample_time",
]
