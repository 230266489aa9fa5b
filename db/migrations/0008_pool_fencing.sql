-- Pool desktops of a silent host (issue 9 item 4, second half).
--
-- vms.lost_state: the state a VM was in when poold marked it 'lost' (its
-- host stopped heart-beating).  A host that merely was late comes back with
-- its VMs: its hostd puts each one it still runs back into this state
-- (db_vm_found) instead of the pool rebuilding it; poold also counts a lost
-- spare as holding its place (no replacement) until its host is fenced.
-- Only read while state = 'lost'; every marking writes it afresh.
ALTER TABLE vms
    ADD COLUMN lost_state text
        CHECK (lost_state IS NULL OR lost_state IN ('provisioning', 'booting', 'ready',
            'assigned', 'connected', 'disconnected', 'logging_off', 'refreshing', 'stopped',
            'failed', 'migrating'));
