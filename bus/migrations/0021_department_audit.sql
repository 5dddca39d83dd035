-- Issue #21, point 5: a department proves what became of its own message (a refusal above all)
-- through its own adapter, by the message id it knows. The router audits a refused submission
-- under an id derived from its bytes (bus/router/outputs.py rejection_id), with the sender's id
-- in the leaf's details, so the lookup needs the case (indexed) and a look into the leaf.
--
-- casebus_adapter still may not read the audit log (0011: with that, any department adapter's
-- login could read every agency's traffic). It gets one door instead: the entries of ONE
-- message whose id it names, accepted, delivered, acknowledged, refused or dead-lettered. The
-- adapter answers them only to the message's parties (bus/audit/access.py), as the proof
-- service does. The hashes of the tree and the signed checkpoints carry no case content
-- (checkpoints are public over HTTP already) and make the inclusion proofs.
CREATE FUNCTION casebus_message_audit(p_message_id uuid, p_case_id text)
RETURNS TABLE (idx bigint, event_kind text, message_id uuid, case_id text, leaf bytea,
               recorded_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT e.idx, e.event_kind, e.message_id, e.case_id, e.leaf, e.recorded_at
      FROM audit_entries e
     WHERE e.message_id = p_message_id
    UNION
    SELECT e.idx, e.event_kind, e.message_id, e.case_id, e.leaf, e.recorded_at
      FROM audit_entries e
     WHERE p_case_id IS NOT NULL AND e.case_id = p_case_id
       AND e.event_kind IN ('rejected', 'dead_lettered')
       AND convert_from(e.leaf, 'UTF8')::jsonb #>> '{details,original_message_id}'
           = p_message_id::text
     ORDER BY 1
$$;
REVOKE ALL ON FUNCTION casebus_message_audit(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION casebus_message_audit(uuid, text)
    TO casebus_adapter, casebus_procuratorate_adapter;
GRANT SELECT ON audit_nodes, audit_checkpoints TO casebus_adapter;
