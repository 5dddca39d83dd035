-- An inbox reader stopped in the middle of a batch commits what it handled and takes back the
-- markers of the messages it did not get to (bus/inbox.py, _UNMARK), so they are handled
-- after the restart. As their own roles the services could not: the DELETE was refused, the
-- whole batch rolled back and was read again (nothing lost or doubled, but an error at every
-- such stop). A role that may mark a message handled may take the mark back.
GRANT DELETE ON inbox_handled
    TO casebus_sla, casebus_adapter, casebus_monitor, casebus_procuratorate_adapter;
