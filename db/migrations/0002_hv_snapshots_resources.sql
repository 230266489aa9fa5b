-- Hypervisor: snapshots run as tasks, live resources and the priority boost.

-- A snapshot remembers how the VM was when it was taken (a RAM snapshot of
-- a paused VM comes back paused), the task that creates or removes it, and
-- why it failed.
ALTER TABLE snapshots
    ADD COLUMN vm_power text NOT NULL DEFAULT 'off'
        CHECK (vm_power IN ('off', 'running', 'paused')),
    ADD COLUMN error text NOT NULL DEFAULT '',
    ADD COLUMN task_id bigint REFERENCES tasks(id) ON DELETE SET NULL;

-- boosted: this VM gets the host at once (highest CPU weight, no caps) and
-- every other VM of its host a low weight, until unboosted.  At most one VM
-- per host is boosted (db_vm_boost keeps it so in one statement).
-- source_snapshot: 'VM/SNAPSHOT' a VM was cloned from, for the admin.
ALTER TABLE vms
    ADD COLUMN boosted boolean NOT NULL DEFAULT false,
    ADD COLUMN source_snapshot text NOT NULL DEFAULT '';
