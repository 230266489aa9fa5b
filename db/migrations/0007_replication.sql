-- Disaster-recovery replication (issue 9 point 5): a VM's disk is copied to
-- another host on a schedule, incrementally (QEMU persistent dirty bitmaps),
-- so that the VM can be started there from the last consistent copy when
-- its own host is lost.
--
-- One row per replicated VM.  The source hostd (the VM's host) queues a
-- vm.replicate task when next_sync_at is due; the target hostd keeps the
-- copy in its data dir as a qcow2 chain and records each complete sync in
-- one statement (layer_path, point_at) together with the end of both tasks.
-- layer_path is the top of the last complete copy on target_host_id; NULL
-- until the first full copy succeeded (or after the target changed).
-- point_at is the recovery point: when the last complete copy was taken.
-- max_bps caps the copy (QEMU's job speed), NULL = no cap.
CREATE TABLE vm_replication (
    vm_id           bigint PRIMARY KEY REFERENCES vms(id) ON DELETE CASCADE,
    target_host_id  bigint NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    interval_s      integer NOT NULL CHECK (interval_s BETWEEN 10 AND 604800),
    max_bps         bigint CHECK (max_bps IS NULL OR max_bps >= 4096),
    enabled         boolean NOT NULL DEFAULT true,
    next_sync_at    timestamptz NOT NULL DEFAULT now(),
    layer_path      text,
    layer_host_id   bigint REFERENCES hosts(id) ON DELETE SET NULL,
    point_at        timestamptz,
    syncs           integer NOT NULL DEFAULT 0,
    last_sync_at    timestamptz,
    last_bytes      bigint,
    last_full       boolean,
    last_error      text NOT NULL DEFAULT '',
    -- Which sync the copy at layer_path came from, and which sync last ran a
    -- backup job that may have cleared the source's dirty bitmap.  An
    -- incremental sync is valid only when they are the same: the bitmap then
    -- holds exactly what changed since the copy on the target was taken.
    layer_task      bigint,
    bitmap_task     bigint,
    recovered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vm_replication_due_idx ON vm_replication (next_sync_at) WHERE enabled;
