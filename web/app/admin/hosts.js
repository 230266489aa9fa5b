// Hosts: every hypervisor that registered, with its heartbeat, capacity and
// a live CPU/memory chart of the last 15 minutes.

import { api } from '../api.js';
import { h, badge, busy, confirmDialog, fmtAgo, fmtMiB, fmtTime, listView, toast } from '../ui.js';
import { session } from '../main.js';
import { liveChart } from '../chart.js';

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
            { label: 'CPU and memory', value: (x) => liveChart('host', x.id, { label: x.name, compact: true }) },
        ],
        actions: session.user && session.user.role === 'admin' ? (x, reload) => {
            if (x.state === 'offline')
                return [];
            const to = x.state === 'maintenance' ? 'online' : 'maintenance';
            return [h('button', { type: 'button', class: 'btn', onclick: async (e) => {
                if (to === 'maintenance' && !await confirmDialog(
                    `Put ${x.name} in maintenance? No new desktops are placed on it.`, 'Maintenance'))
                    return;
                await busy(e.target, async () => {
                    await api('PATCH', `/hosts/${x.id}`, { state: to });
                    toast(`${x.name} is ${to === 'online' ? 'back online' : 'in maintenance'}.`, 'ok');
                    reload();
                });
            } }, to === 'online' ? 'End maintenance' : 'Maintenance')];
        } : undefined,
    });
    main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Hosts'),
        h('button', { type: 'button', class: 'btn', onclick: () => list.reload() }, 'Refresh')), list.el);
}
