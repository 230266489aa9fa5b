-- Session control (issue 5 item 5, issue 6 item 5): a person's or an admin's
-- "disconnect" that displayd carries out, and view-only (shadow) viewers.

-- disconnect_requested_at: when someone asked for the session's viewers to be
-- dropped.  displayd is told at once (NOTIFY below) and, after it lost and
-- regained the database, compares this with when its viewers joined, so a
-- request made while it was not listening still takes effect.
-- shadowed_at/shadowed_by: an admin is watching view-only right now (set by
-- displayd when the first shadow viewer joins, cleared when the last leaves).
ALTER TABLE desktop_sessions
    ADD COLUMN disconnect_requested_at timestamptz,
    ADD COLUMN shadowed_at timestamptz,
    ADD COLUMN shadowed_by bigint REFERENCES users(id) ON DELETE SET NULL;

-- A view-only ticket admits a shadow viewer: it never takes the session over
-- and its input is dropped.  Only VNC and the browser console offer that, and
-- a shadow always watches one desktop session.
ALTER TABLE console_tickets
    ADD COLUMN view_only boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT console_tickets_view_only_check
        CHECK (NOT view_only OR (protocol IN ('vnc', 'browser') AND session_id IS NOT NULL));

-- displayd LISTENs on atrium_session: a disconnect request, or the end of the
-- session (log-off), closes that session's viewers.  Payload: the session id.
CREATE FUNCTION atrium_notify_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('atrium_session', NEW.id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER desktop_sessions_notify AFTER UPDATE ON desktop_sessions
    FOR EACH ROW
    WHEN (NEW.disconnect_requested_at IS DISTINCT FROM OLD.disconnect_requested_at
          OR (NEW.state = 'ended' AND OLD.state <> 'ended'))
    EXECUTE FUNCTION atrium_notify_session();
