// VMs: every desktop VM, filtered by pool, host and state on the server;
// power (the desired state hostd carries out) and delete.  Console,
// snapshots and live resources need broker routes that do not exist yet.

import { api, qs } from '../api.js';
import { h, badge, busy, confirmDialog, fmtAgo, fmtMiB, fmtTime, listView, toast } from '../ui.js';
import { session } from '../main.js';
import { liveChart } from '../chart.js';

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
    h('p', { class: 'muted small' }, 'Console, snapshot and live-resource actions appear here once the broker offers them.'),
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
}
