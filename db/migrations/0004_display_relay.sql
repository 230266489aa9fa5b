-- Consoles across hosts (issue 9): QEMU's console sockets exist only on the
-- VM's own host, so a displayd that serves a viewer of a VM elsewhere reaches
-- it through that host's displayd ("relay": TLS, one byte stream to one
-- console socket).  Each displayd announces where its relay listens and the
-- SHA-256 of its certificate (the connecting side pins it: no CA needed,
-- the database is already trusted with everything else).
ALTER TABLE hosts
    ADD COLUMN display_relay text NOT NULL DEFAULT '',
    ADD COLUMN display_relay_cert text NOT NULL DEFAULT '';

-- One-time internal tickets: the connecting displayd writes one, bound to
-- the VM, the console kind and the host that must serve it; the owning
-- displayd consumes it in one UPDATE (unused, unexpired, its own host, the VM
-- still there).  Only the SHA-256 is stored.  They live 30 s at most.
CREATE TABLE display_relay_tickets (
    ticket_hash     bytea PRIMARY KEY CHECK (length(ticket_hash) = 32),
    vm_id           bigint NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
    host_id         bigint NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('vnc', 'spice', 'qmp')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz,
    CHECK (expires_at > created_at AND expires_at <= created_at + interval '30 seconds')
);
CREATE INDEX display_relay_tickets_expires ON display_relay_tickets (expires_at);
