// Disaster-recovery replication on the VMs page.  Each row shows whether
// the VM's disk is copied to another host, where to, and the age of its
// recovery point (the last complete copy), which counts up as the seconds
// pass and is read again from the broker every 10 s.  For admins a dialog sets,
// changes or stops the replication, makes a sync due now and recovers the
// VM on the host that holds its copy (confirmed; refused by the broker
// while the VM's own host heart-beats unless forced), following the
// recovery's task to its end.

import { api, errorText, qs } from '../api.js';
import { h, badge, busy, clear, confirmDialog, field, fmtTime, messageBox, modal, toast } from '../ui.js';

const TICK_MS = 250; // the shown age is at most this late
const REFRESH_MS = 10000;
const DIALOG_POLL_MS = 2000;
const TASK_POLL_MS = 1000;
const INTERVAL_MIN = 10;
const INTERVAL_MAX = 604800;
const MAX_BPS_MIN = 4096;

// 42 s, 3 min 5 s, 2 h 10 min, 1 d 4 h
export function fmtAge(s) {
    if (s === null || s === undefined)
        return '—';
    if (s < 60)
        return `${s} s`;
    if (s < 3600)
        return `${Math.floor(s / 60)} min ${s % 60} s`;
    if (s < 86400)
        return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

// A replication as read at @at (performance.now()): its recovery point's
// age now.  The broker's age is whole seconds rounded down, so the time
// since is rounded to the nearest: the sum is at most 1.5 s off.
function ageNow(rep, at) {
    if (rep.recovery_point_age_s === null || rep.recovery_point_age_s === undefined)
        return null;
    return rep.recovery_point_age_s + Math.max(0, Math.round((performance.now() - at) / 1000));
}

// Set @el's text when it changed (the ages are redrawn four times a second).
function setText(el, text) {
    if (el.textContent !== text)
        el.textContent = text;
}

function pointText(rep, at) {
    const age = ageNow(rep, at);
    return age === null ? 'no copy yet' : `recovery point ${fmtAge(age)} old`;
}

/*
 * The Replication column: cell(v) draws VM @v's (from the VM list's
 * "replication" member); every second the ages count up, every 10 s the
 * replications are read again (GET /replications) and the cells redrawn.
 * Returns {cell, refresh, stop}.
 */
export function replicationColumn() {
    const cells = new Map(); // vm id -> {el, rep, at}
    let stopped = false;

    function draw(c) {
        const r = c.rep;
        if (!r) {
            clear(c.el, h('span', { class: 'muted' }, 'not replicated'));
            return;
        }
        c.age = h('span', { class: 'rep-age' }, pointText(r, c.at));
        clear(c.el, badge(r.state), ` to ${r.target_host}`, h('div', { class: 'small' }, c.age),
            r.last_error ? h('div', { class: 'detail' }, r.last_error) : null);
    }

    function cell(v) {
        const c = { el: h('span', { class: 'replication', dataset: { vm: String(v.id) } }), rep: v.replication,
            at: performance.now() };
        cells.set(v.id, c);
        draw(c);
        return c.el;
    }

    const tick = setInterval(() => {
        for (const c of cells.values())
            if (c.rep && c.age)
                setText(c.age, pointText(c.rep, c.at));
    }, TICK_MS);

    async function refresh() {
        // rows that left the page (a reload of the list, another page) go
        for (const [id, c] of cells)
            if (!c.el.isConnected)
                cells.delete(id);
        if (!cells.size)
            return;
        const page = await api('GET', `/replications${qs({ limit: 500 })}`);
        const now = performance.now();
        const byVm = new Map(page.items.map((r) => [r.vm_id, r]));
        for (const [id, c] of cells) {
            // beyond the first 500 a VM keeps what the VM list said
            if (byVm.has(id) || page.next_offset === undefined) {
                c.rep = byVm.get(id) || null;
                c.at = now;
                draw(c);
            }
        }
    }

    let timer = null;
    async function loop() {
        try {
            await refresh();
        } catch (e) {
            // the list shows its own errors; the cells keep counting
        }
        if (!stopped)
            timer = setTimeout(loop, REFRESH_MS);
    }
    timer = setTimeout(loop, REFRESH_MS);

    return {
        cell,
        refresh,
        stop() {
            stopped = true;
            clearInterval(tick);
            clearTimeout(timer);
        },
    };
}

// The Replication dialog of VM @v (admins): its state, and forms to set or
// change the target and schedule, sync now, stop, and recover.  @changed()
// is called when the dialog closes after a change.
export async function replicationDialog(v, button, changed) {
    const loaded = await busy(button, () => Promise.all([
        api('GET', `/hosts${qs({ limit: 500 })}`),
        api('GET', `/vms/${v.id}/replication`).catch((e) => {
            if (e.status === 404)
                return null;
            throw e;
        }),
    ]));
    if (!loaded)
        return;
    const [hosts] = loaded;
    let rep = loaded[1];
    let at = performance.now();
    let dirty = false;
    const others = hosts.items.filter((x) => x.id !== v.host_id);

    const msg = messageBox();
    const status = h('div', { class: 'rep-status', 'aria-live': 'off' });
    const to = h('select', { name: 'to_host', required: true },
        others.map((x) => h('option', { value: String(x.id) }, `${x.name} (#${x.id}, ${x.state})`)));
    const interval = h('input', { name: 'interval_s', type: 'number', inputmode: 'numeric', min: INTERVAL_MIN,
        max: INTERVAL_MAX, step: 1, required: true, value: String(rep ? rep.interval_s : 300) });
    const maxBps = h('input', { name: 'max_bps', type: 'number', inputmode: 'numeric', min: MAX_BPS_MIN, step: 1,
        placeholder: 'no cap', value: rep && rep.max_bps ? String(rep.max_bps) : '' });
    if (rep)
        to.value = String(rep.target_host_id);
    const save = h('button', { type: 'submit', class: 'btn btn-primary' }, rep && rep.enabled ? 'Save' : 'Replicate');
    const form = h('form', { novalidate: true, class: 'rep-form' },
        h('div', { class: 'grid-form' },
            field('Copy to host', to, others.length ? 'the host that keeps the last complete copy' : 'there is no other host'),
            field('Every (seconds)', interval, `${INTERVAL_MIN}–${INTERVAL_MAX}; the first copy is full, then only what changed`),
            field('Bandwidth cap (bytes/s)', maxBps, `at least ${MAX_BPS_MIN}; empty: no cap`)),
        h('div', { class: 'actions' }, save));
    save.disabled = !others.length;

    const syncBtn = h('button', { type: 'button', class: 'btn' }, 'Sync now');
    const offBtn = h('button', { type: 'button', class: 'btn btn-danger' }, 'Stop replication');
    const force = h('input', { type: 'checkbox', name: 'force' });
    const recoverBtn = h('button', { type: 'button', class: 'btn btn-danger' }, 'Recover…');
    const progress = h('div', { class: 'small', hidden: true });
    const recoverBox = h('section', { class: 'rep-recover', 'aria-labelledby': 'rep-recover-h' },
        h('h3', { id: 'rep-recover-h' }, 'Recover'),
        h('p', { class: 'muted small' }, `Starts ${v.name} on the host that holds its copy, with its disk as of the recovery point. `,
            'Refused while its own host still heart-beats.'),
        h('div', { class: 'checks' }, h('label', {}, force,
            'Force: its host is known to be dead although it heart-beats (or it runs twice)')),
        progress,
        h('div', { class: 'actions' }, recoverBtn));

    const dlg = modal(`Replication of ${v.name}`, h('div', {}, status, msg, form,
        h('div', { class: 'actions' }, syncBtn, offBtn), recoverBox));
    let timer = null;
    let taskTimer = null;
    let open = true;
    dlg.dialog.addEventListener('close', () => {
        open = false;
        clearTimeout(timer);
        clearTimeout(taskTimer);
        if (dirty)
            changed();
    });

    function drawStatus() {
        if (!rep) {
            clear(status, h('p', {}, `${v.name} is not replicated.`));
        } else {
            const rows = [
                ['State', badge(rep.state)],
                ['Copied to', `${rep.target_host} every ${rep.interval_s} s${rep.max_bps ? `, at most ${rep.max_bps} bytes/s` : ''}`],
                ['Recovery point', rep.recovery_point_at
                    ? h('span', {}, h('span', { class: 'rep-age' }, `${fmtAge(ageNow(rep, at))} old`),
                        ` (${fmtTime(rep.recovery_point_at)})`) : 'none yet'],
                ['Last complete sync', rep.last_sync_at
                    ? `${fmtTime(rep.last_sync_at)}, ${rep.last_bytes} bytes, ${rep.last_full ? 'full' : 'incremental'}` : 'none yet'],
            ];
            if (rep.task_id)
                rows.push(['Under way', `task #${rep.task_id}${rep.task_progress !== null ? ` (${rep.task_progress}%)` : ''}`]);
            if (rep.last_error)
                rows.push(['Last error', h('span', { class: 'detail' }, rep.last_error)]);
            clear(status, h('dl', { class: 'facts' }, rows.map(([k, val]) => [h('dt', {}, k), h('dd', {}, val)])));
        }
        const on = !!rep && rep.enabled;
        syncBtn.disabled = !on;
        offBtn.disabled = !on;
        recoverBtn.disabled = !rep || !rep.copy_host_id || rep.state === 'recovering';
        save.textContent = on ? 'Save' : 'Replicate';
    }

    // read again while it exists (a VM that is not replicated has nothing
    // that changes by itself)
    async function poll() {
        clearTimeout(timer);
        if (!open)
            return;
        if (rep) {
            try {
                rep = await api('GET', `/vms/${v.id}/replication`);
            } catch (e) {
                if (e.status === 404)
                    rep = null;
            }
            at = performance.now();
            drawStatus();
        }
        if (open)
            timer = setTimeout(poll, DIALOG_POLL_MS);
    }
    // the age counts up between the reads
    const tick = setInterval(() => {
        if (!open)
            return clearInterval(tick);
        const el = status.querySelector('.rep-age');
        if (rep && el)
            setText(el, `${fmtAge(ageNow(rep, at))} old`);
    }, TICK_MS);

    form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const iv = Number(interval.value.trim());
        if (!Number.isInteger(iv) || iv < INTERVAL_MIN || iv > INTERVAL_MAX) {
            msg.show(`The interval must be a whole number of seconds from ${INTERVAL_MIN} to ${INTERVAL_MAX}.`);
            interval.focus();
            return;
        }
        let cap = null;
        if (maxBps.value.trim() !== '') {
            cap = Number(maxBps.value.trim());
            if (!Number.isInteger(cap) || cap < MAX_BPS_MIN) {
                msg.show(`The bandwidth cap must be a whole number of at least ${MAX_BPS_MIN} bytes/s, or empty.`);
                maxBps.focus();
                return;
            }
        }
        const r = await busy(save, () => api('PUT', `/vms/${v.id}/replication`,
            { to_host: Number(to.value), interval_s: iv, max_bps: cap }), msg);
        if (!r)
            return;
        rep = r;
        at = performance.now();
        dirty = true;
        msg.show(`${v.name} is copied to ${r.target_host} every ${r.interval_s} s.`, 'ok');
        drawStatus();
    });

    syncBtn.addEventListener('click', async () => {
        const r = await busy(syncBtn, () => api('POST', `/vms/${v.id}/replication/sync`), msg);
        if (!r)
            return;
        rep = r;
        at = performance.now();
        dirty = true;
        msg.show(`A sync of ${v.name} is due now; its host starts it with its next heartbeat.`, 'info');
        drawStatus();
    });

    offBtn.addEventListener('click', async () => {
        if (!await confirmDialog(`Stop replicating ${v.name}? The last copy stays on ${rep.target_host} and can still be recovered from.`,
            'Stop replication'))
            return;
        const r = await busy(offBtn, () => api('DELETE', `/vms/${v.id}/replication`), msg);
        if (!r)
            return;
        rep = r;
        at = performance.now();
        dirty = true;
        msg.show(`${v.name} is no longer replicated; its copy on ${r.target_host} stays.`, 'ok');
        drawStatus();
    });

    async function follow(task, where) {
        clearTimeout(taskTimer);
        if (!open)
            return;
        try {
            const t = await api('GET', `/tasks/${task}`);
            if (t.state === 'queued' || t.state === 'running') {
                clear(progress, h('progress', { max: 100, value: t.progress || 0, 'aria-label': `task ${t.id} progress` }),
                    ` ${t.progress || 0}% ${t.message || t.state}`);
                taskTimer = setTimeout(() => follow(task, where), TASK_POLL_MS);
                return;
            }
            progress.hidden = true;
            if (t.state === 'succeeded') {
                const age = t.result ? t.result.point_age_s : null;
                msg.show(`${v.name} was recovered on ${where} from its copy of ${fmtAge(age)} ago; it boots there.`, 'ok');
            } else {
                msg.show(`The recovery ${t.state}: ${t.error || 'no reason given'}`);
            }
        } catch (e) {
            msg.show(errorText(e));
            taskTimer = setTimeout(() => follow(task, where), 2000);
        }
    }

    recoverBtn.addEventListener('click', async () => {
        const where = rep.copy_host_id === rep.target_host_id ? rep.target_host : `host #${rep.copy_host_id}`;
        const age = ageNow(rep, at);
        if (!await confirmDialog(`Recover ${v.name} on ${where}? It starts there with its disk as of ${fmtAge(age)} ago; `
            + 'what it wrote since is lost, and its replication stops.', 'Recover'))
            return;
        const r = await busy(recoverBtn, () => api('POST', `/vms/${v.id}/recover`,
            { on_host: rep.copy_host_id, force: force.checked }), msg);
        if (!r)
            return;
        dirty = true;
        msg.show(`Recovering ${v.name} on ${where}: task #${r.task_id}.`, 'info');
        toast(`Recovery of ${v.name} queued as task #${r.task_id}.`, 'ok');
        progress.hidden = false;
        recoverBtn.disabled = true;
        follow(r.task_id, where);
    });

    drawStatus();
    to.focus();
    timer = setTimeout(poll, DIALOG_POLL_MS);
}
