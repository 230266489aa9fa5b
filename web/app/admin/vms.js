// VMs: every desktop VM, filtered by pool, host and state on the server.
// Power actions, console, snapshots and live resources need broker routes
// that do not exist yet; the page says so rather than offering buttons
// that could not work.

import { h, badge, fmtAgo, fmtMiB, fmtTime, listView } from '../ui.js';

const STATES = ['provisioning', 'booting', 'ready', 'assigned', 'connected', 'disconnected', 'logging_off',
    'refreshing', 'stopped', 'failed', 'migrating', 'deleting'];

export function renderVms(main) {
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
            { label: 'Pool', value: (v) => (v.pool_id ? `#${v.pool_id}` : '—') },
            { label: 'Host', value: (v) => (v.host_id ? `#${v.host_id}` : '—') },
            { label: 'Size', value: (v) => `${v.vcpus ?? '—'} vCPU, ${fmtMiB(v.memory_mb)}` },
            { label: 'Assigned to', value: (v) => (v.assigned_user_id ? `user #${v.assigned_user_id}` : '—') },
            { label: 'Since', value: (v) => h('span', { title: fmtTime(v.state_changed_at) }, fmtAgo(v.state_changed_at)) },
        ],
    });
    main.append(h('div', { class: 'page-head' }, h('h1', {}, 'VMs'),
        h('button', { type: 'button', class: 'btn', onclick: () => list.reload() }, 'Refresh')),
    h('p', { class: 'msg msg-info' }, 'Power, console, snapshot and live-resource actions appear here once the broker offers them; today its API lists VMs only.'),
    list.el);
}
