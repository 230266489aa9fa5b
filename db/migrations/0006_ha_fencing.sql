-- HA restart with fencing (issue 9 item 4).
--
-- vms.ha: restart this VM on a healthy host when its host is fenced.  Pool
-- VMs are not flagged: spares are rebuilt from the golden image anyway, and
-- an assigned pool VM restarted elsewhere would come back as a spare.
ALTER TABLE vms
    ADD COLUMN ha boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT vms_ha_pool_check CHECK (NOT ha OR pool_id IS NULL);

-- hosts.fence_deadline_s: the host's promise, written by its hostd at
-- start: once it has gone this long without a database heartbeat, none of
-- its QEMUs runs any more (hostd and its fence guard kill them).  0: an old
-- hostd that promises nothing; such a host is never fenced.
-- fenced_at: when poold declared the host fenced (state 'fenced'): its
-- heartbeat had been older than the deadline plus poold's margin.
ALTER TABLE hosts
    ADD COLUMN fence_deadline_s integer NOT NULL DEFAULT 0
        CHECK (fence_deadline_s >= 0 AND fence_deadline_s <= 3600),
    ADD COLUMN fenced_at timestamptz,
    DROP CONSTRAINT hosts_state_check,
    ADD CONSTRAINT hosts_state_check
        CHECK (state IN ('online', 'offline', 'maintenance', 'fenced'));

-- A VM never runs on two hosts at once.  Its row may leave a host only while
-- that host is alive (its heartbeat is younger than half its fence deadline:
-- a live migration, committed by the source hostd itself) or once the host is
-- fenced (its QEMUs are dead by its own promise).  From a host in between,
-- which may still run the VM, every move is refused whoever asks.
CREATE FUNCTION atrium_vm_host_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    h hosts%ROWTYPE;
BEGIN
    IF OLD.host_id IS NULL OR NEW.host_id IS NOT DISTINCT FROM OLD.host_id THEN
        RETURN NEW;
    END IF;
    SELECT * INTO h FROM hosts WHERE id = OLD.host_id;
    IF NOT FOUND OR h.state = 'fenced' OR h.fence_deadline_s = 0 THEN
        RETURN NEW;
    END IF;
    IF h.heartbeat_at IS NOT NULL
       AND h.heartbeat_at > now() - make_interval(secs => h.fence_deadline_s / 2.0) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'VM % cannot leave host %: it stopped heart-beating and is not fenced',
        OLD.name, h.name USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER vms_host_guard BEFORE UPDATE OF host_id ON vms
    FOR EACH ROW EXECUTE FUNCTION atrium_vm_host_guard();
