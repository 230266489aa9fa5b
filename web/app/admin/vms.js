// VMs: every desktop VM, filtered by pool, host and state on the server;
// power (the desired state hostd carries out), live resources (memory
// target, CPU weight and caps, disk limits, boost: applied by hostd without
// a restart), snapshots (taken, reverted and deleted by the VM's host in
// tasks whose progress the dialog shows), live migration to another host
// (admins; the task's progress, then QEMU's downtime), disaster-recovery
// replication (replication.js: where each VM's disk is copied and the age of
// its recovery point; admins set, sync, stop and recover), delete, and a live
// CPU/memory chart per running VM.  An admin console of a VM needs a broker route
// that does not exist yet.

import { api, errorText, qs } from '../api.js';
import { h, badge, busy, clear, confirmDialog, field, fmtAgo, fmtMiB, fmtTime, listView, messageBox, modal, toast } from '../ui.js';
import { session } from '../main.js';
import { liveChart } from '../chart.js';
import { replicationColumn, replicationDialog } from './replication.js';

// The live-resource fields: [member, label, min, max, hint]; empty = no limit.
const LIMITS = [
    ['cpu_max_pct', 'CPU cap (%)', 1, 100000, '100 = one host CPU; empty: no cap'],
    ['memory_max_mb', 'QEMU memory limit (MiB)', 64, 4194304, 'hard limit of the whole process; empty: none'],
    ['disk_iops', 'Disk operations/s', 1, 2147483647, 'empty: unlimited'],
    ['disk_bps', 'Disk bytes/s', 1, Number.MAX_SAFE_INTEGER, 'empty: unlimited'],
    ['net_bps', 'Network bytes/s', 1, Number.MAX_SAFE_INTEGER, 'empty: unlimited'],
];

// The live-resources dialog of VM @v: reads the current values, sends only
// what changed, then says whether its host has applied them.
async function resourcesDialog(v, button) {
    const cur = await busy(button, () => api('GET', `/vms/${v.id}/resources`));
    if (!cur)
        return;
    const msg = messageBox();
    const input = (name, value, min, max, extra = {}) => h('input', { name, type: 'number', inputmode: 'numeric',
        min, max, step: 1, value: value === null || value === undefined ? '' : String(value), ...extra });
    const balloon = input('balloon_mb', cur.balloon_mb, 64, cur.memory_mb, { placeholder: `${cur.memory_mb} (all)` });
    const weight = input('cpu_weight', cur.cpu_weight, 1, 10000, { required: true });
    const boost = h('input', { type: 'checkbox', name: 'boost', checked: cur.boosted });
    const form = h('form', { novalidate: true },
        h('p', { class: 'muted small' }, `${cur.name}: ${cur.vcpus} vCPU, ${fmtMiB(cur.memory_mb)}. `,
            cur.applied ? 'Its host has applied the current values.' : 'Its host has not applied the latest change yet.'),
        h('div', { class: 'grid-form' },
            field('Memory target (MiB)', balloon, `live, through the balloon: 64–${cur.memory_mb}; empty: all of it`),
            field('CPU weight', weight, '1–10000; 100 = an equal share'),
            LIMITS.map(([k, label, min, max, hint]) => field(label, input(k, cur[k], min, max), hint))),
        h('div', { class: 'checks' }, h('label', {}, boost, 'Boost: this VM gets its host first (one per host)')),
        msg,
        h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Apply'),
            h('button', { type: 'button', class: 'btn', onclick: () => dlg.close() }, 'Cancel')));
    const dlg = modal(`Live resources of ${cur.name}`, form);
    balloon.focus();
    form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const body = {};
        const read = (el, k, min, max, label) => {
            const t = el.value.trim();
            if (t === '')
                return null;
            const n = Number(t);
            if (!Number.isInteger(n) || n < min || n > max)
                throw new Error(`${label} must be a whole number from ${min} to ${max}, or empty.`);
            return n;
        };
        try {
            const b = read(balloon, 'balloon_mb', 64, cur.memory_mb, 'Memory target');
            if (b !== cur.balloon_mb)
                body.balloon_mb = b;
            const w = read(weight, 'cpu_weight', 1, 10000, 'CPU weight');
            if (w === null)
                throw new Error('CPU weight must be a whole number from 1 to 10000.');
            if (w !== cur.cpu_weight)
                body.cpu_weight = w;
            for (const [k, label, min, max] of LIMITS) {
                const x = read(form.elements[k], k, min, max, label);
                if (x !== cur[k])
                    body[k] = x;
            }
        } catch (err) {
            msg.show(err.message);
            return;
        }
        if (boost.checked !== cur.boosted)
            body.boost = boost.checked;
        if (!Object.keys(body).length) {
            msg.show('Nothing changed.', 'info');
            return;
        }
        await busy(e.submitter, async () => {
            const after = await api('PATCH', `/vms/${v.id}/resources`, body);
            dlg.close();
            toast(`${after.name}: live resources saved; its host applies them now.`, 'ok');
        }, msg);
    });
}

const SNAP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const SNAP_POLL_MS = 2000;

// The snapshots dialog of VM @v: the list (with a progress bar for each
// running task), a form for a new one, revert and delete.  While a task
// runs the dialog polls; it stops when closed.
function snapshotsDialog(v) {
    const msg = messageBox();
    const tbody = h('tbody');
    const tasks = new Map(); // snapshot id -> {id, done} of the last task started on it here
    const name = h('input', { name: 'name', maxlength: 63, autocomplete: 'off',
        placeholder: 'before-update' });
    const ram = h('input', { type: 'checkbox', name: 'with_ram', checked: v.actual_power === 'running' || v.actual_power === 'paused' });
    const desc = h('input', { name: 'description', maxlength: 255 });
    const take = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Take snapshot');
    const form = h('form', { class: 'snapshot-form', novalidate: true },
        h('div', { class: 'grid-form' }, field('Snapshot name', name, '1–63 letters, digits, . _ -'),
            field('Description', desc)),
        h('div', { class: 'checks' }, h('label', {}, ram, 'With its RAM (the VM must run; it resumes where it was)')),
        h('div', { class: 'actions' }, take));
    const table = h('table', { class: 'list' }, h('caption', { class: 'sr-only' }, `Snapshots of ${v.name}`),
        h('thead', {}, h('tr', {}, ['Snapshot', 'State', 'Taken', 'Size', ''].map((t) => h('th', { scope: 'col' }, t)))),
        tbody);
    const dlg = modal(`Snapshots of ${v.name}`, h('div', {}, msg, h('div', { class: 'table-wrap' }, table), form));
    let timer = null;
    let open = true;
    dlg.dialog.addEventListener('close', () => {
        open = false;
        clearTimeout(timer);
    });

    async function act(s, button, how) {
        const verb = how === 'revert' ? 'Revert' : 'Delete';
        const q = how === 'revert'
            ? `Take ${v.name} back to snapshot ${s.name}? What changed since is lost.`
            : `Delete snapshot ${s.name} of ${v.name}?`;
        if (!await confirmDialog(q, verb))
            return;
        await busy(button, async () => {
            const r = how === 'revert'
                ? await api('POST', `/vms/${v.id}/snapshots/${s.id}/revert`)
                : await api('DELETE', `/vms/${v.id}/snapshots/${s.id}`);
            tasks.set(s.id, { id: r.task_id, done: how === 'revert' ? `${v.name} is back at snapshot ${s.name}.` : null });
            msg.show(`${how === 'revert' ? 'Reverting to' : 'Deleting'} ${s.name}: task #${r.task_id} on the VM's host.`, 'info');
            load();
        }, msg);
    }

    async function load() {
        clearTimeout(timer);
        if (!open)
            return;
        let busyNow = false;
        try {
            const res = await api('GET', `/vms/${v.id}/snapshots`);
            const rows = [];
            for (const s of res.items) {
                const mine = tasks.get(s.id);
                const taskId = mine ? mine.id : (s.state === 'creating' ? s.task_id : null);
                let progress = null;
                if (taskId) {
                    const t = await api('GET', `/tasks/${taskId}`).catch(() => null);
                    if (t && (t.state === 'queued' || t.state === 'running')) {
                        busyNow = true;
                        progress = h('div', { class: 'small' },
                            h('progress', { max: 100, value: t.progress || 0, 'aria-label': `task ${t.id} progress` }),
                            ` ${t.progress || 0}% ${t.message || t.state}`);
                    } else if (t && t.state === 'failed') {
                        progress = h('div', { class: 'detail' }, `task #${t.id} failed: ${t.error || 'no reason given'}`);
                        tasks.delete(s.id);
                    } else if (t) {
                        if (mine && mine.done && t.state === 'succeeded')
                            msg.show(mine.done, 'ok');
                        tasks.delete(s.id);
                    }
                }
                if (s.state === 'creating' || s.state === 'deleting')
                    busyNow = true;
                const ready = s.state === 'ready';
                const rb = h('button', { type: 'button', class: 'btn', disabled: !ready || !!progress,
                    onclick: () => act(s, rb, 'revert') }, 'Revert');
                const db = h('button', { type: 'button', class: 'btn btn-danger',
                    disabled: !(ready || s.state === 'failed') || !!progress, onclick: () => act(s, db, 'delete') }, 'Delete');
                rows.push(h('tr', {},
                    h('td', { dataset: { label: 'Snapshot' } }, h('strong', {}, s.name),
                        s.description ? h('div', { class: 'muted small' }, s.description) : null),
                    h('td', { dataset: { label: 'State' } }, badge(s.state),
                        ` ${s.with_ram ? 'with RAM' : 'disk only'}`, s.error ? h('div', { class: 'detail' }, s.error) : null, progress),
                    h('td', { dataset: { label: 'Taken' } }, h('span', { title: fmtTime(s.created_at) }, fmtAgo(s.created_at))),
                    h('td', { dataset: { label: 'Size' } }, s.size_bytes ? fmtMiB(Math.round(s.size_bytes / 2 ** 20)) : '—'),
                    h('td', { class: 'row-actions' }, rb, db)));
            }
            clear(tbody, rows.length ? rows
                : h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'No snapshots yet.')));
        } catch (e) {
            msg.show(errorText(e));
        }
        if (open)
            timer = setTimeout(load, busyNow ? SNAP_POLL_MS : 10000);
    }

    form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const n = name.value.trim();
        if (!SNAP_NAME.test(n)) {
            msg.show('The snapshot name must be 1–63 letters, digits, ".", "_" or "-", starting with a letter or digit.');
            name.focus();
            return;
        }
        const body = { name: n, with_ram: ram.checked };
        if (desc.value.trim())
            body.description = desc.value.trim();
        await busy(take, async () => {
            const r = await api('POST', `/vms/${v.id}/snapshots`, body);
            tasks.set(r.snapshot_id, { id: r.task_id, done: `Snapshot ${n} is ready.` });
            msg.show(`Taking snapshot ${n}: task #${r.task_id} on the VM's host.`, 'info');
            name.value = '';
            desc.value = '';
            load();
        }, msg);
    });
    name.focus();
    load();
}

const MIGRATE_POLL_MS = 500;

// The Migrate dialog of running VM @v (admins): choose an online host, with
// or without shared storage; the task's progress follows until it ends, with
// QEMU's downtime and total time at the end; Cancel stops it (the VM keeps
// running where it was).
async function migrateDialog(v, button, reload) {
    const hosts = await busy(button, () => api('GET', `/hosts${qs({ limit: 500 })}`));
    if (!hosts)
        return;
    const targets = hosts.items.filter((x) => x.id !== v.host_id && x.state === 'online');
    const msg = messageBox();
    const to = h('select', { name: 'to_host', required: true },
        targets.map((x) => h('option', { value: String(x.id) }, `${x.name} (#${x.id})`)));
    const copy = h('input', { type: 'checkbox', name: 'copy_storage' });
    const go = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Migrate');
    const stop = h('button', { type: 'button', class: 'btn btn-danger', hidden: true }, 'Cancel migration');
    const progress = h('div', { class: 'small', hidden: true });
    const form = h('form', { novalidate: true },
        h('p', { class: 'muted small' }, `${v.name} keeps running while it moves; consoles follow it.`),
        h('div', { class: 'grid-form' }, field('To host', to, targets.length ? 'online hosts only' : 'no other host is online')),
        h('div', { class: 'checks' }, h('label', {}, copy, 'Copy its disk too (the hosts do not share storage)')),
        progress, msg,
        h('div', { class: 'actions' }, go, stop,
            h('button', { type: 'button', class: 'btn', onclick: () => dlg.close() }, 'Close')));
    const dlg = modal(`Migrate ${v.name}`, form);
    let timer = null;
    let open = true;
    dlg.dialog.addEventListener('close', () => {
        open = false;
        clearTimeout(timer);
        reload();
    });
    go.disabled = !targets.length;
    to.focus();

    async function follow(task, where) {
        clearTimeout(timer);
        if (!open)
            return;
        try {
            const t = await api('GET', `/tasks/${task}`);
            if (t.state === 'queued' || t.state === 'running') {
                clear(progress);
                progress.append(h('progress', { max: 100, value: t.progress || 0, 'aria-label': `task ${t.id} progress` }),
                    ` ${t.progress || 0}% ${t.message || t.state}`);
                timer = setTimeout(() => follow(task, where), MIGRATE_POLL_MS);
                return;
            }
            progress.hidden = true;
            stop.hidden = true;
            if (t.state === 'succeeded') {
                const r = t.result || {};
                msg.show(`${v.name} now runs on ${where}: downtime ${r.downtime_ms} ms, total ${r.total_ms} ms.`, 'ok');
            } else {
                msg.show(t.state === 'cancelled' ? `Migration cancelled: ${v.name} keeps running where it was.`
                    : `The migration failed: ${t.error || 'no reason given'}`);
                go.disabled = false;
            }
        } catch (e) {
            msg.show(errorText(e));
            timer = setTimeout(() => follow(task, where), 2000);
        }
    }

    form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const where = to.selectedOptions[0] ? to.selectedOptions[0].textContent : '';
        const r = await busy(go, () => api('POST', `/vms/${v.id}/migrate`,
            { to_host: Number(to.value), copy_storage: copy.checked }), msg);
        if (!r)
            return;
        msg.show(`Migrating ${v.name} to ${where}: task #${r.task_id}.`, 'info');
        go.disabled = true; // after busy(), which enables it again
        stop.hidden = false;
        progress.hidden = false;
        follow(r.task_id, where);
    });
    stop.addEventListener('click', () => busy(stop, () => api('POST', `/vms/${v.id}/migrate/cancel`), msg));
}

const POWER = [['running', 'Start'], ['paused', 'Pause'], ['stopped', 'Stop']];

function powerButtons(v, reload) {
    const out = [];
    for (const [desired, label] of POWER) {
        if (v.desired_power === desired)
            continue;
        out.push(h('button', { type: 'button', class: `btn${desired === 'stopped' ? ' btn-danger' : ''}`, onclick: async (e) => {
            if (desired === 'stopped' && v.assigned_user_id &&
                !await confirmDialog(`${v.name} is in use. Stop it anyway? Unsaved work in it is lost.`, 'Stop'))
                return;
            await busy(e.target, async () => {
                await api('POST', `/vms/${v.id}/power`, { desired });
                toast(`${v.name}: asked to be ${desired}; its host carries it out.`, 'ok');
                reload();
            });
        } }, label));
    }
    const res = h('button', { type: 'button', class: 'btn', onclick: () => resourcesDialog(v, res) }, 'Resources');
    out.push(res, h('button', { type: 'button', class: 'btn', onclick: () => snapshotsDialog(v) }, 'Snapshots'));
    if (session.user && session.user.role === 'admin' && v.host_id &&
        (v.actual_power === 'running' || v.actual_power === 'paused')) {
        const mig = h('button', { type: 'button', class: 'btn', onclick: () => migrateDialog(v, mig, reload) }, 'Migrate');
        out.push(mig);
    }
    // HA restart (admins, VMs outside pools): started on a healthy host
    // when this one's host is fenced.
    if (session.user && session.user.role === 'admin' && !v.pool_id)
        out.push(h('button', { type: 'button', class: 'btn', onclick: async (e) => {
            await busy(e.target, async () => {
                const r = await api('PATCH', `/vms/${v.id}`, { ha: !v.ha });
                toast(r.ha ? `${v.name} is restarted on another host if its host is fenced.`
                    : `${v.name} is no longer restarted elsewhere.`, 'ok');
                reload();
            });
        } }, v.ha ? 'HA off' : 'HA on'));
    if (session.user && session.user.role === 'admin') {
        const rep = h('button', { type: 'button', class: 'btn', onclick: () => replicationDialog(v, rep, reload) },
            'Replication');
        out.push(rep);
    }
    if (session.user && session.user.role === 'admin')
        out.push(h('button', { type: 'button', class: 'btn btn-danger', onclick: async (e) => {
            if (!await confirmDialog(`Delete ${v.name}? Its host stops it and removes its disk.`, 'Delete'))
                return;
            await busy(e.target, async () => {
                await api('DELETE', `/vms/${v.id}`);
                toast(`${v.name} is being deleted.`, 'ok');
                reload();
            });
        } }, 'Delete'));
    return out;
}

const STATES = ['provisioning', 'booting', 'ready', 'assigned', 'connected', 'disconnected', 'logging_off',
    'refreshing', 'stopped', 'failed', 'migrating', 'deleting'];

export function renderVms(main) {
    // Pool and host names for the rows (one page of each is read once).
    const names = { pool: new Map(), host: new Map() };
    const named = (kind, id) => (id ? (names[kind].has(id) ? `${names[kind].get(id)} (#${id})` : `#${id}`) : '—');
    const replication = replicationColumn();
    const list = listView({
        path: '/vms',
        caption: 'Virtual machines',
        empty: 'No VMs match.',
        filters: [
            { name: 'state', label: 'State', type: 'select', options: STATES.map((s) => [s, s.replace('_', ' ')]) },
            { name: 'pool', label: 'Pool id', type: 'number', placeholder: 'any' },
            { name: 'host', label: 'Host id', type: 'number', placeholder: 'any' },
        ],
        rowClass: (v) => (v.state === 'failed' ? 'row-bad' : ''),
        columns: [
            { label: 'Name', value: (v) => h('strong', {}, v.name) },
            { label: 'State', value: (v) => h('span', {}, badge(v.state),
                v.last_error ? h('div', { class: 'detail' }, v.last_error) : null) },
            { label: 'Power', value: (v) => `${v.actual_power || '—'}${v.desired_power && v.desired_power !== v.actual_power ? ` → ${v.desired_power}` : ''}` },
            { label: 'Pool', value: (v) => named('pool', v.pool_id) },
            { label: 'Host', value: (v) => named('host', v.host_id) },
            { label: 'HA', value: (v) => (v.pool_id ? '—' : v.ha ? 'on' : 'off') },
            { label: 'Replication', value: (v) => replication.cell(v) },
            { label: 'Size', value: (v) => `${v.vcpus ?? '—'} vCPU, ${fmtMiB(v.memory_mb)}` },
            { label: 'Assigned to', value: (v) => (v.assigned_user_id ? `user #${v.assigned_user_id}` : '—') },
            { label: 'Since', value: (v) => h('span', { title: fmtTime(v.state_changed_at) }, fmtAgo(v.state_changed_at)) },
            { label: 'CPU and memory', value: (v) => (v.actual_power === 'running' || v.actual_power === 'paused'
                ? liveChart('vm', v.id, { label: v.name, compact: true }) : h('span', { class: 'muted' }, 'not running')) },
        ],
        actions: (v, reload) => (v.state === 'deleting' ? [] : powerButtons(v, reload)),
    });
    main.append(h('div', { class: 'page-head' }, h('h1', {}, 'VMs'),
        h('button', { type: 'button', class: 'btn', onclick: () => list.reload() }, 'Refresh')),
    h('p', { class: 'muted small' }, 'An admin console of a VM appears here once the broker offers one.'),
    list.el);
    Promise.all([api('GET', `/pools${qs({ limit: 500 })}`), api('GET', `/hosts${qs({ limit: 500 })}`)])
        .then(([pools, hosts]) => {
            for (const p of pools.items)
                names.pool.set(p.id, p.name);
            for (const x of hosts.items)
                names.host.set(x.id, x.name);
            list.reload();
        })
        .catch(() => {}); // the rows keep their ids; the list shows its own errors
    return () => replication.stop();
}
