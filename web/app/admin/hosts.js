// Hosts: every hypervisor that registered, with its heartbeat and capacity.

import { h, badge, fmtAgo, fmtMiB, fmtTime, listView } from '../ui.js';

export function renderHosts(main) {
    const list = listView({
        path: '/hosts',
        caption: 'Hosts',
        empty: 'No host has registered. Start atrium-hostd on a server that shares this database.',
        filters: [{ name: 'state', label: 'State', type: 'select',
            options: [['online', 'online'], ['offline', 'offline'], ['maintenance', 'maintenance']] }],
        rowClass: (x) => (x.state === 'offline' ? 'row-bad' : ''),
        columns: [
            { label: 'Name', value: (x) => h('strong', {}, x.name) },
            { label: 'Address', value: (x) => x.address || '—' },
            { label: 'State', value: (x) => badge(x.state) },
            { label: 'Accelerator', value: (x) => h('span', {}, x.accel || '—',
                x.accel_note ? h('div', { class: 'muted small' }, x.accel_note) : null) },
            { label: 'CPUs (VM capacity)', value: (x) => `${x.cpus ?? '—'} (${x.cpu_capacity ?? '—'})` },
            { label: 'Memory (VM capacity)', value: (x) => `${fmtMiB(x.memory_mb)} (${fmtMiB(x.memory_capacity_mb)})` },
            { label: 'Heartbeat', value: (x) => h('span', { title: fmtTime(x.heartbeat_at) }, fmtAgo(x.heartbeat_at)) },
            { label: 'Version', value: (x) => x.version || '—' },
        ],
    });
    main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Hosts'),
        h('button', { type: 'button', class: 'btn', onclick: () => list.reload() }, 'Refresh')), list.el);
}
