-- Issue #20: a sender that writes its signed envelope straight to its submit topic skips its
-- adapter's check that it uploaded, or may already read, each stored file it refers to; the
-- router makes that check again in its audit transaction (bus.router.plan), refusing the
-- message (attachment_not_held) before any recipient is granted the file. It reads who
-- uploaded what and who holds which reference; it stores, records and changes nothing there.
GRANT SELECT ON attachment_uploads, attachment_refs TO casebus_router;
