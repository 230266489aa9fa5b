-- Atrium schema, version 1: every table the appliance needs.
-- Applied in one transaction by libatrium-db (db/migrate.c); do not add
-- BEGIN/COMMIT here.  Ownership of each table: docs/ARCHITECTURE.md.

-- ---------------------------------------------------------------- hosts --
CREATE TABLE hosts (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    address         text NOT NULL DEFAULT '',
    state           text NOT NULL DEFAULT 'online'
                    CHECK (state IN ('online', 'offline', 'maintenance')),
    cpus            integer NOT NULL DEFAULT 0 CHECK (cpus >= 0),
    memory_mb       bigint NOT NULL DEFAULT 0 CHECK (memory_mb >= 0),
    -- capacity offered to VMs (admins may over- or under-commit)
    cpu_capacity    integer NOT NULL DEFAULT 0 CHECK (cpu_capacity >= 0),
    memory_capacity_mb bigint NOT NULL DEFAULT 0 CHECK (memory_capacity_mb >= 0),
    accel           text NOT NULL DEFAULT 'unknown' CHECK (accel IN ('unknown', 'kvm', 'tcg')),
    accel_note      text NOT NULL DEFAULT '',
    version         text NOT NULL DEFAULT '',
    info            jsonb NOT NULL DEFAULT '{}',
    heartbeat_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- --------------------------------------------------------------- images --
CREATE TABLE images (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 128),
    description     text NOT NULL DEFAULT '',
    os_type         text NOT NULL DEFAULT 'linux',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Versions are immutable once ready: the file is never written after import.
CREATE TABLE image_versions (
    id              bigserial PRIMARY KEY,
    image_id        bigint NOT NULL REFERENCES images(id) ON DELETE RESTRICT,
    version         integer NOT NULL CHECK (version >= 1),
    state           text NOT NULL DEFAULT 'importing'
                    CHECK (state IN ('importing', 'ready', 'failed', 'deleting')),
    path            text NOT NULL DEFAULT '',
    format          text NOT NULL DEFAULT 'qcow2' CHECK (format IN ('qcow2')),
    source_format   text NOT NULL DEFAULT '' ,
    size_bytes      bigint NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),
    virtual_size_bytes bigint NOT NULL DEFAULT 0 CHECK (virtual_size_bytes >= 0),
    sha256          text NOT NULL DEFAULT '' CHECK (sha256 ~ '^([0-9a-f]{64})?$'),
    notes           text NOT NULL DEFAULT '',
    -- boot from kernel+initrd instead of the disk's boot loader (test guests)
    boot_kernel     text NOT NULL DEFAULT '',
    boot_initrd     text NOT NULL DEFAULT '',
    boot_cmdline    text NOT NULL DEFAULT '',
    -- which host holds the file; NULL = shared storage visible to every host
    host_id         bigint REFERENCES hosts(id) ON DELETE SET NULL,
    error           text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (image_id, version)
);

-- ---------------------------------------------------------------- users --
CREATE TABLE users (
    id              bigserial PRIMARY KEY,
    username        text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9_][A-Za-z0-9._@-]{0,127}$'),
    display_name    text NOT NULL DEFAULT '',
    email           text NOT NULL DEFAULT '',
    source          text NOT NULL DEFAULT 'local' CHECK (source IN ('local', 'pam')),
    password_hash   text,            -- argon2id encoded string; local users only
    role            text NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'operator', 'user')),
    disabled        boolean NOT NULL DEFAULT false,
    totp_secret     bytea,           -- NULL: no second factor enrolled
    totp_enabled    boolean NOT NULL DEFAULT false,
    totp_last_step  bigint NOT NULL DEFAULT 0,  -- refuse replay of a used code
    failed_logins   integer NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    locked_until    timestamptz,
    last_login_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (source = 'local' OR password_hash IS NULL)
);

CREATE TABLE recovery_codes (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash       bytea NOT NULL,
    used_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, code_hash)
);

-- Per-role policy, e.g. admins must use a second factor.
CREATE TABLE role_policies (
    role            text PRIMARY KEY CHECK (role IN ('admin', 'operator', 'user')),
    totp_required   boolean NOT NULL DEFAULT false
);
INSERT INTO role_policies (role) VALUES ('admin'), ('operator'), ('user');

CREATE TABLE groups (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 128),
    source          text NOT NULL DEFAULT 'local' CHECK (source IN ('local', 'unix')),
    description     text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
    user_id         bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    group_id        bigint NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, group_id)
);
CREATE INDEX memberships_group_idx ON memberships (group_id);

-- Failed-attempt counters per client address (and any other throttle key).
CREATE TABLE auth_throttle (
    key             text PRIMARY KEY,           -- e.g. 'addr:192.0.2.7'
    failures        integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    window_start    timestamptz NOT NULL DEFAULT now(),
    blocked_until   timestamptz
);

-- ---------------------------------------------------------------- pools --
CREATE TABLE pools (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    description     text NOT NULL DEFAULT '',
    image_version_id bigint REFERENCES image_versions(id) ON DELETE RESTRICT,
    vcpus           integer NOT NULL DEFAULT 2 CHECK (vcpus BETWEEN 1 AND 256),
    memory_mb       integer NOT NULL DEFAULT 2048 CHECK (memory_mb BETWEEN 64 AND 4194304),
    disk_gb         integer NOT NULL DEFAULT 20 CHECK (disk_gb BETWEEN 1 AND 65536),
    protocols       text[] NOT NULL DEFAULT '{spice,rdp,vnc,browser}'
                    CHECK (protocols <@ ARRAY['spice','rdp','vnc','browser']::text[]
                           AND cardinality(protocols) >= 1),
    assignment      text NOT NULL DEFAULT 'floating' CHECK (assignment IN ('floating', 'dedicated')),
    min_size        integer NOT NULL DEFAULT 0 CHECK (min_size >= 0),
    max_size        integer NOT NULL DEFAULT 10 CHECK (max_size >= 0),
    spare           integer NOT NULL DEFAULT 1 CHECK (spare >= 0),
    name_pattern    text NOT NULL DEFAULT '{pool}-{n}',
    idle_timeout_s  integer NOT NULL DEFAULT 0 CHECK (idle_timeout_s >= 0),        -- 0: never
    disconnect_timeout_s integer NOT NULL DEFAULT 3600 CHECK (disconnect_timeout_s >= 0),
    power_policy    text NOT NULL DEFAULT 'on' CHECK (power_policy IN ('on', 'paused', 'off')),
    enabled         boolean NOT NULL DEFAULT true,
    -- VM numbers only grow, so a name is never given twice (a late clean-up
    -- of an old VM can never hit a new one)
    next_vm_number  bigint NOT NULL DEFAULT 1 CHECK (next_vm_number >= 1),
    -- written by the acting poold: ok | provisioning | no_capacity | failing | no_image | disabled
    status          text NOT NULL DEFAULT 'ok',
    status_detail   text NOT NULL DEFAULT '',
    -- provisioning stopped after repeated failures, until an admin clears it
    failing_since   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (min_size <= max_size),
    CHECK (spare <= max_size)
);

CREATE TABLE entitlements (
    id              bigserial PRIMARY KEY,
    pool_id         bigint NOT NULL REFERENCES pools(id) ON DELETE CASCADE,
    user_id         bigint REFERENCES users(id) ON DELETE CASCADE,
    group_id        bigint REFERENCES groups(id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((user_id IS NULL) <> (group_id IS NULL))
);
CREATE UNIQUE INDEX entitlements_user_uq ON entitlements (pool_id, user_id) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX entitlements_group_uq ON entitlements (pool_id, group_id) WHERE group_id IS NOT NULL;

-- ------------------------------------------------------------------ vms --
-- Desired state (desired_power, resources) is written by the broker, poold
-- and atriumctl; actual state (state, actual_power, qemu_pid ...) by hostd.
CREATE TABLE vms (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    pool_id         bigint REFERENCES pools(id) ON DELETE RESTRICT,
    host_id         bigint REFERENCES hosts(id) ON DELETE RESTRICT,
    image_version_id bigint REFERENCES image_versions(id) ON DELETE RESTRICT,
    state           text NOT NULL DEFAULT 'provisioning'
                    CHECK (state IN ('provisioning', 'booting', 'ready', 'assigned', 'connected',
                                     'disconnected', 'logging_off', 'refreshing', 'stopped',
                                     'failed', 'lost', 'migrating', 'deleting')),
    desired_power   text NOT NULL DEFAULT 'running'
                    CHECK (desired_power IN ('running', 'paused', 'stopped', 'deleted')),
    actual_power    text NOT NULL DEFAULT 'off'
                    CHECK (actual_power IN ('off', 'starting', 'running', 'paused', 'crashed')),
    -- definition
    vcpus           integer NOT NULL DEFAULT 2 CHECK (vcpus BETWEEN 1 AND 256),
    memory_mb       integer NOT NULL DEFAULT 2048 CHECK (memory_mb BETWEEN 64 AND 4194304),
    disk_path       text NOT NULL DEFAULT '',        -- overlay (linked clone) or own disk
    disk_gb         integer NOT NULL DEFAULT 20 CHECK (disk_gb BETWEEN 1 AND 65536),
    boot            text NOT NULL DEFAULT 'disk' CHECK (boot IN ('disk', 'kernel')),
    boot_kernel     text NOT NULL DEFAULT '',
    boot_initrd     text NOT NULL DEFAULT '',
    boot_cmdline    text NOT NULL DEFAULT '',
    nic_mode        text NOT NULL DEFAULT 'user' CHECK (nic_mode IN ('none', 'user', 'bridge')),
    bridge          text NOT NULL DEFAULT '',
    mac             macaddr,
    -- live resources (applied without restart)
    balloon_mb      integer CHECK (balloon_mb IS NULL OR balloon_mb >= 64),
    cpu_weight      integer NOT NULL DEFAULT 100 CHECK (cpu_weight BETWEEN 1 AND 10000),
    cpu_max_pct     integer CHECK (cpu_max_pct IS NULL OR cpu_max_pct >= 1),
    memory_max_mb   integer CHECK (memory_max_mb IS NULL OR memory_max_mb >= 64),
    disk_iops       integer CHECK (disk_iops IS NULL OR disk_iops >= 1),
    disk_bps        bigint CHECK (disk_bps IS NULL OR disk_bps >= 1),
    net_bps         bigint CHECK (net_bps IS NULL OR net_bps >= 1),
    resources_gen   integer NOT NULL DEFAULT 0,      -- bumped on every desired change
    applied_gen     integer NOT NULL DEFAULT 0,      -- what hostd applied
    -- actual state, reported by hostd
    qemu_pid        integer,
    qemu_started_at timestamptz,
    last_error      text NOT NULL DEFAULT '',
    -- assignment (pool library; one VM, one person)
    assigned_user_id bigint REFERENCES users(id) ON DELETE SET NULL,
    assigned_at     timestamptz,
    image_stale     boolean NOT NULL DEFAULT false,  -- refresh to the pool's image at logoff
    state_changed_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vms_pool_state_idx ON vms (pool_id, state);
CREATE INDEX vms_host_idx ON vms (host_id);
-- A person holds at most one VM of a pool.
CREATE UNIQUE INDEX vms_pool_user_uq ON vms (pool_id, assigned_user_id)
    WHERE assigned_user_id IS NOT NULL;

CREATE TABLE snapshots (
    id              bigserial PRIMARY KEY,
    vm_id           bigint NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    description     text NOT NULL DEFAULT '',
    with_ram        boolean NOT NULL DEFAULT false,
    state           text NOT NULL DEFAULT 'creating'
                    CHECK (state IN ('creating', 'ready', 'failed', 'deleting')),
    size_bytes      bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (vm_id, name)
);

-- ----------------------------------------------------- logins (web/API) --
CREATE TABLE logins (
    id              bigserial PRIMARY KEY,
    token_hash      bytea NOT NULL UNIQUE,       -- SHA-256 of the opaque token
    csrf_hash       bytea,
    user_id         bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind            text NOT NULL DEFAULT 'browser' CHECK (kind IN ('browser', 'api')),
    mfa_passed      boolean NOT NULL DEFAULT false,
    client_addr     inet,
    user_agent      text NOT NULL DEFAULT '',
    name            text NOT NULL DEFAULT '',    -- API tokens: what the admin called it
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz
);
CREATE INDEX logins_user_idx ON logins (user_id);

-- ----------------------------------------------------- desktop sessions --
CREATE TABLE desktop_sessions (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    pool_id         bigint REFERENCES pools(id) ON DELETE SET NULL,
    vm_id           bigint REFERENCES vms(id) ON DELETE SET NULL,
    state           text NOT NULL DEFAULT 'assigned'
                    CHECK (state IN ('assigned', 'connected', 'disconnected', 'logging_off', 'ended')),
    protocol        text CHECK (protocol IN ('spice', 'rdp', 'vnc', 'browser')),
    client_addr     inet,
    client_name     text NOT NULL DEFAULT '',
    started_at      timestamptz NOT NULL DEFAULT now(),
    connected_at    timestamptz,
    disconnected_at timestamptz,
    ended_at        timestamptz,
    end_reason      text NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX desktop_sessions_live_user_pool_uq ON desktop_sessions (user_id, pool_id)
    WHERE state <> 'ended';
CREATE UNIQUE INDEX desktop_sessions_live_vm_uq ON desktop_sessions (vm_id)
    WHERE state <> 'ended';
CREATE INDEX desktop_sessions_state_idx ON desktop_sessions (state);

-- ------------------------------------------------------ console tickets --
CREATE TABLE console_tickets (
    id              bigserial PRIMARY KEY,
    ticket_hash     bytea NOT NULL UNIQUE,       -- SHA-256 of the ticket
    vm_id           bigint NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
    session_id      bigint REFERENCES desktop_sessions(id) ON DELETE CASCADE,
    user_id         bigint REFERENCES users(id) ON DELETE CASCADE,
    protocol        text NOT NULL CHECK (protocol IN ('spice', 'rdp', 'vnc', 'browser')),
    client_addr     inet,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz,
    used_by_addr    inet,
    -- classic VNC auth (8 characters, DES over a challenge) needs the clear
    -- text to check an answer: kept only for short VNC tickets, only until
    -- used or expired (displayd wipes it), and those live 10 s at most
    vnc_password    text CHECK (vnc_password IS NULL OR (protocol = 'vnc'
                                AND length(vnc_password) = 8
                                AND expires_at <= created_at + interval '10 seconds')),
    CHECK (expires_at > created_at AND expires_at <= created_at + interval '30 seconds')
);
CREATE INDEX console_tickets_expires_idx ON console_tickets (expires_at);

-- ---------------------------------------------------------------- tasks --
-- Long operations.  Claimed with FOR UPDATE SKIP LOCKED by the daemon that
-- runs them (host_id set: only that host's hostd).
CREATE TABLE tasks (
    id              bigserial PRIMARY KEY,
    kind            text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.]{0,63}$'),
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    host_id         bigint REFERENCES hosts(id) ON DELETE CASCADE,
    vm_id           bigint REFERENCES vms(id) ON DELETE SET NULL,
    pool_id         bigint REFERENCES pools(id) ON DELETE SET NULL,
    image_version_id bigint REFERENCES image_versions(id) ON DELETE SET NULL,
    params          jsonb NOT NULL DEFAULT '{}',
    result          jsonb NOT NULL DEFAULT '{}',
    progress        smallint NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    message         text NOT NULL DEFAULT '',
    error           text NOT NULL DEFAULT '',
    attempts        integer NOT NULL DEFAULT 0,
    claimed_by      text NOT NULL DEFAULT '',
    created_by      bigint REFERENCES users(id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    heartbeat_at    timestamptz,
    finished_at     timestamptz
);
-- Claim order is (created_at, id); one index per queue so the oldest queued
-- task is found without sorting the queue.
CREATE INDEX tasks_queue_any_idx ON tasks (created_at, id) WHERE state = 'queued' AND host_id IS NULL;
CREATE INDEX tasks_queue_host_idx ON tasks (host_id, created_at, id)
    WHERE state = 'queued' AND host_id IS NOT NULL;
CREATE INDEX tasks_state_idx ON tasks (state, created_at);

-- ------------------------------------------------------------ audit log --
CREATE TABLE audit_log (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    actor_user_id   bigint REFERENCES users(id) ON DELETE SET NULL,
    actor           text NOT NULL DEFAULT '',    -- username or daemon name, kept after deletion
    client_addr     inet,
    action          text NOT NULL CHECK (action ~ '^[a-z][a-z0-9_.]{0,63}$'),
    target_type     text NOT NULL DEFAULT '',
    target_id       text NOT NULL DEFAULT '',
    outcome         text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    detail          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, at DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, at DESC);

-- ------------------------------------------------------- metric samples --
-- One row per host (vm_id NULL) or VM per sample; retention is bounded by hostd.
CREATE TABLE metric_samples (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    host_id         bigint NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    vm_id           bigint REFERENCES vms(id) ON DELETE CASCADE,
    cpu_pct         real NOT NULL DEFAULT 0,
    mem_used_mb     bigint NOT NULL DEFAULT 0,
    mem_total_mb    bigint NOT NULL DEFAULT 0,
    balloon_mb      bigint,
    disk_rd_bytes   bigint NOT NULL DEFAULT 0,
    disk_wr_bytes   bigint NOT NULL DEFAULT 0,
    disk_rd_ops     bigint NOT NULL DEFAULT 0,
    disk_wr_ops     bigint NOT NULL DEFAULT 0,
    net_rx_bytes    bigint NOT NULL DEFAULT 0,
    net_tx_bytes    bigint NOT NULL DEFAULT 0,
    vm_count        integer
);
CREATE INDEX metric_samples_host_at_idx ON metric_samples (host_id, at) WHERE vm_id IS NULL;
CREATE INDEX metric_samples_vm_at_idx ON metric_samples (vm_id, at) WHERE vm_id IS NOT NULL;
CREATE INDEX metric_samples_at_idx ON metric_samples (at);

-- ------------------------------------------------------------- settings --
CREATE TABLE settings (
    key             text PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_.]{0,63}$'),
    value           jsonb NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- ------------------------------------------------------ wake-ups (NOTIFY) --
-- Daemons LISTEN instead of polling.  Payloads are small identifiers only;
-- the listener re-reads the rows it cares about.
--   atrium_vm     '<vm id>:<host id or empty>'   any change of a VM row
--   atrium_task   '<task id>:<host id or empty>' a task was queued or changed state
--   atrium_pool   '<pool id>'                    a pool's definition changed
CREATE FUNCTION atrium_notify_vm() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM pg_notify('atrium_vm', r.id::text || ':' || coalesce(r.host_id::text, ''));
    IF TG_OP = 'UPDATE' AND OLD.host_id IS DISTINCT FROM NEW.host_id AND OLD.host_id IS NOT NULL THEN
        PERFORM pg_notify('atrium_vm', OLD.id::text || ':' || OLD.host_id::text);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER vms_notify AFTER INSERT OR UPDATE OR DELETE ON vms
    FOR EACH ROW EXECUTE FUNCTION atrium_notify_vm();

CREATE FUNCTION atrium_notify_task() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM NEW.state
       OR OLD.progress IS DISTINCT FROM NEW.progress THEN
        PERFORM pg_notify('atrium_task', NEW.id::text || ':' || coalesce(NEW.host_id::text, ''));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_notify AFTER INSERT OR UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION atrium_notify_task();

CREATE FUNCTION atrium_notify_pool() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('atrium_pool', NEW.id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER pools_notify AFTER INSERT OR UPDATE ON pools
    FOR EACH ROW EXECUTE FUNCTION atrium_notify_pool();

-- Keep updated_at and state_changed_at true without every writer remembering.
CREATE FUNCTION atrium_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER hosts_touch BEFORE UPDATE ON hosts FOR EACH ROW EXECUTE FUNCTION atrium_touch();
CREATE TRIGGER images_touch BEFORE UPDATE ON images FOR EACH ROW EXECUTE FUNCTION atrium_touch();
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION atrium_touch();
CREATE TRIGGER pools_touch BEFORE UPDATE ON pools FOR EACH ROW EXECUTE FUNCTION atrium_touch();

CREATE FUNCTION atrium_vm_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        NEW.state_changed_at := now();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER vms_touch BEFORE UPDATE ON vms FOR EACH ROW EXECUTE FUNCTION atrium_vm_touch();
