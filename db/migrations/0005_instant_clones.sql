-- Instant clones (issue 11): a pool's desktops are linked clones that boot
-- from the golden image ('linked', as before), or instant clones that resume
-- from a template hostd boots once per image version on each host and then
-- forks ('instant': memory shared copy-on-write, no boot).
ALTER TABLE pools
    ADD COLUMN clone_mode text NOT NULL DEFAULT 'linked'
        CONSTRAINT pools_clone_mode_check CHECK (clone_mode IN ('linked', 'instant'));
