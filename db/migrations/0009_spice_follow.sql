-- SPICE across a live migration (issue 9).  Before the RAM copy starts, the
-- source hostd gives QEMU (client_migrate_info) a host name for the SPICE
-- client: a one-time-issued token written here, bound to the VM and the
-- destination host.  The client connects its channels for the destination
-- through the same proxy (its displayd) with that name; the displayd admits
-- such a connection only from the address of a live SPICE viewer of that VM
-- and hands it to the destination's QEMU through the relay.  Only the
-- SHA-256 is stored; a token lives as long as its migration may run.
CREATE TABLE display_spice_follow (
    token_hash      bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    vm_id           bigint NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
    to_host         bigint NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    CHECK (expires_at > created_at AND expires_at <= created_at + interval '1 day')
);
CREATE INDEX display_spice_follow_expires ON display_spice_follow (expires_at);
