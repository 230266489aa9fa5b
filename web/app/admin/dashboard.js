// Admin dashboard: what needs attention first (failed VMs, failed tasks,
// hosts not online), then hosts and their capacity, pools against their
// targets, VMs and sessions by state, and live CPU/memory charts of every
// host and of the first running VMs (chart.js polls the samples hostd
// records).  Refreshed every few seconds.

import { api, metrics, errorText, qs } from '../api.js';
import { h, clear, badge, fmtAgo, fmtMiB, messageBox } from '../ui.js';
import { liveChart } from '../chart.js';

const REFRESH_MS = 5000;
const CHART_HOSTS = 12; // charts of more hosts or VMs are on the Hosts and VMs pages
const CHART_VMS = 6;
const VM_STATES = ['provisioning', 'booting', 'ready', 'assigned', 'connected', 'disconnected',
    'logging_off', 'refreshing', 'stopped', 'failed', 'migrating', 'deleting'];

function link(href, text) {
    return h('a', { href, dataset: { link: '' } }, text);
}

function bars(counts, order) {
    const keys = (order || Object.keys(counts)).filter((k) => counts[k]);
    const total = keys.reduce((a, k) => a + counts[k], 0);
    if (!total)
        return h('p', { class: 'muted' }, 'None.');
    return h('ul', { class: 'bars' }, keys.map((k) => h('li', {},
        h('span', {}, badge(k)),
        h('meter', { min: 0, max: total, value: counts[k], 'aria-label': `${k}: ${counts[k]} of ${total}` }),
        h('span', {}, String(counts[k])))));
}

export function renderDashboard(main) {
    const msg = messageBox();
    const attention = h('section', { class: 'card wide', 'aria-labelledby': 'att-h' });
    const hosts = h('section', { class: 'card', 'aria-labelledby': 'hosts-h' });
    const pools = h('section', { class: 'card', 'aria-labelledby': 'pools-h' });
    const vms = h('section', { class: 'card third', 'aria-labelledby': 'vms-h' });
    const sessions = h('section', { class: 'card third', 'aria-labelledby': 'ses-h' });
    const tasks = h('section', { class: 'card third', 'aria-labelledby': 'tasks-h' });
    const hostCharts = h('div', { class: 'charts', id: 'host-charts' });
    const vmCharts = h('div', { class: 'charts', id: 'vm-charts' });
    const vmChartsNote = h('p', { class: 'muted small' });
    const hostChartsNote = h('p', { class: 'muted small', hidden: true }, 'No host has registered yet.');
    const charts = h('section', { class: 'card wide', 'aria-labelledby': 'charts-h' },
        h('h2', { id: 'charts-h' }, 'CPU and memory, last 15 minutes'),
        h('h3', { class: 'charts-group' }, 'Hosts'), hostChartsNote, hostCharts,
        h('h3', { class: 'charts-group' }, 'Running VMs'), vmChartsNote, vmCharts);
    const updated = h('span', { class: 'muted small', 'aria-live': 'off' });
    main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Dashboard'), updated), msg,
        h('div', { class: 'dash' }, attention, hosts, pools, vms, sessions, tasks, charts));

    let timer = null;
    let stopped = false;

    async function load() {
        clearTimeout(timer);
        try {
            const [hostPage, poolPage, failedVms, failedTasks, runningTasks, m, vmPage] = await Promise.all([
                api('GET', `/hosts${qs({ limit: 100 })}`),
                api('GET', `/pools${qs({ limit: 100 })}`),
                api('GET', `/vms${qs({ state: 'failed', limit: 10 })}`),
                api('GET', `/tasks${qs({ state: 'failed', limit: 10 })}`),
                api('GET', `/tasks${qs({ state: 'running', limit: 10 })}`),
                metrics().catch(() => null),
                api('GET', `/vms${qs({ limit: 200 })}`),
            ]);
            msg.hide();
            drawAttention(hostPage.items, failedVms, failedTasks);
            drawHosts(hostPage);
            drawPools(poolPage, vmPage);
            drawVms(poolPage.items, m);
            drawSessions(m);
            drawTasks(runningTasks.items);
            drawCharts(hostPage.items, vmPage);
            updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
        } catch (e) {
            msg.show(errorText(e));
        }
        if (!stopped)
            timer = setTimeout(load, REFRESH_MS);
    }

    function drawAttention(hostItems, failedVms, failedTasks) {
        const items = [];
        for (const x of hostItems.filter((x) => x.state !== 'online'))
            items.push(h('li', {}, badge(x.state), ' host ', h('strong', {}, x.name),
                ` — last heartbeat ${fmtAgo(x.heartbeat_at)}`));
        for (const v of failedVms.items)
            items.push(h('li', {}, badge('failed'), ' VM ', h('strong', {}, v.name),
                v.last_error ? ` — ${v.last_error}` : ''));
        if (failedVms.next_offset)
            items.push(h('li', {}, link('/admin/vms?state=failed', 'More failed VMs…')));
        for (const t of failedTasks.items)
            items.push(h('li', {}, badge('failed'), ` task #${t.id} `, h('strong', {}, t.kind),
                t.error ? ` — ${t.error}` : '', ` (${fmtAgo(t.finished_at || t.created_at)})`));
        if (failedTasks.next_offset)
            items.push(h('li', {}, link('/admin/tasks?state=failed', 'More failed tasks…')));
        clear(attention, h('h2', { id: 'att-h' }, 'Needs attention'),
            items.length ? h('ul', { class: 'attention' }, items)
                : h('p', { class: 'muted' }, 'Nothing has failed: every host is online, no VM or task failed.'));
    }

    function drawHosts(page) {
        const items = page.items;
        const sum = (f) => items.reduce((a, x) => a + (x[f] || 0), 0);
        clear(hosts, h('h2', { id: 'hosts-h' }, link('/admin/hosts', 'Hosts')),
            h('div', { class: 'stat-row' },
                h('div', {}, h('div', { class: 'stat' }, String(items.filter((x) => x.state === 'online').length),
                    h('span', { class: 'muted small' }, ` / ${items.length}`)), h('div', { class: 'stat-label' }, 'online')),
                h('div', {}, h('div', { class: 'stat' }, String(sum('cpus'))), h('div', { class: 'stat-label' }, 'CPUs')),
                h('div', {}, h('div', { class: 'stat' }, fmtMiB(sum('memory_mb'))), h('div', { class: 'stat-label' }, 'memory'))),
            items.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'list' },
                h('thead', {}, h('tr', {}, ['Host', 'State', 'CPUs (VM capacity)', 'Memory (VM capacity)', 'Heartbeat']
                    .map((t) => h('th', { scope: 'col' }, t)))),
                h('tbody', {}, items.map((x) => h('tr', {},
                    h('td', { dataset: { label: 'Host' } }, x.name, x.accel ? h('span', { class: 'muted small' }, ` ${x.accel}`) : null),
                    h('td', { dataset: { label: 'State' } }, badge(x.state)),
                    h('td', { dataset: { label: 'CPUs' } }, `${x.cpus ?? '—'} (${x.cpu_capacity ?? '—'})`),
                    h('td', { dataset: { label: 'Memory' } }, `${fmtMiB(x.memory_mb)} (${fmtMiB(x.memory_capacity_mb)})`),
                    h('td', { dataset: { label: 'Heartbeat' } }, fmtAgo(x.heartbeat_at)))))))
                : h('p', { class: 'muted' }, 'No host has registered yet. Start atrium-hostd on a server.'));
    }

    // How far a pushed image has got: the pool's VMs (not being deleted) on
    // its current version, out of all of them.  Read from the VM list the
    // charts use; a site with more VMs than that page says so.
    function imageProgress(p, vmPage) {
        const mine = vmPage.items.filter((v) => v.pool_id === p.id && v.state !== 'deleting');
        if (!p.image_version_id || !mine.length)
            return '—';
        const on = mine.filter((v) => v.image_version_id === p.image_version_id).length;
        const words = `${on} of ${mine.length}${vmPage.next_offset ? '+' : ''} on version #${p.image_version_id}`;
        if (on === mine.length && !vmPage.next_offset)
            return h('span', { class: 'muted small' }, `all on version #${p.image_version_id}`);
        return h('span', { class: 'image-progress' },
            h('progress', { max: mine.length, value: on, 'aria-label': `${p.name}: ${words}` }), ` ${words}`);
    }

    function drawPools(page, vmPage) {
        const items = page.items;
        clear(pools, h('h2', { id: 'pools-h' }, link('/admin/pools', 'Pools')),
            items.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'list' },
                h('thead', {}, h('tr', {}, ['Pool', 'VMs / max', 'Spares ready / target', 'In use', 'Image']
                    .map((t) => h('th', { scope: 'col' }, t)))),
                h('tbody', {}, items.map((p) => {
                    const s = p.vm_states || {};
                    const total = Object.values(s).reduce((a, n) => a + n, 0);
                    const inUse = (s.assigned || 0) + (s.connected || 0) + (s.disconnected || 0);
                    const short = (s.ready || 0) < p.spare;
                    return h('tr', { class: s.failed ? 'row-bad' : '' },
                        h('td', { dataset: { label: 'Pool' } }, p.name, p.enabled ? null : h('span', { class: 'muted small' }, ' (disabled)')),
                        h('td', { dataset: { label: 'VMs / max' } }, `${total} / ${p.max_size}`),
                        h('td', { dataset: { label: 'Spares' } }, `${s.ready || 0} / ${p.spare}`, short ? h('span', { class: 'muted small' }, ' (filling)') : null),
                        h('td', { dataset: { label: 'In use' } }, String(inUse)),
                        h('td', { dataset: { label: 'Image' } }, imageProgress(p, vmPage)));
                }))))
                : h('p', {}, 'No pools yet. ', link('/admin/pools', 'Create one.')));
    }

    function drawVms(poolItems, m) {
        const counts = {};
        if (m && m.atrium_vms)
            for (const x of m.atrium_vms)
                counts[x.labels.state] = x.value;
        else
            for (const p of poolItems)
                for (const [k, n] of Object.entries(p.vm_states || {}))
                    counts[k] = (counts[k] || 0) + n;
        const total = Object.values(counts).reduce((a, n) => a + n, 0);
        clear(vms, h('h2', { id: 'vms-h' }, link('/admin/vms', 'VMs by state')),
            h('div', { class: 'stat' }, String(total)), bars(counts, VM_STATES));
    }

    function drawSessions(m) {
        const counts = {};
        for (const x of (m && m.atrium_desktop_sessions) || [])
            if (x.labels.state !== 'ended')
                counts[x.labels.state] = x.value;
        const live = Object.values(counts).reduce((a, n) => a + n, 0);
        clear(sessions, h('h2', { id: 'ses-h' }, link('/admin/sessions', 'Sessions')),
            m ? [h('div', { class: 'stat' }, String(live)), h('div', { class: 'stat-label' }, 'live'),
                bars(counts, ['connected', 'disconnected', 'assigned', 'logging_off'])]
                : h('p', { class: 'muted' }, 'Session counts are not available (the broker’s /metrics did not answer).'));
    }

    // Charts poll on their own; here they are only added and removed as
    // hosts and VMs come and go, so their history survives each refresh.
    function syncCharts(container, items, kind) {
        const want = new Map(items.map((x) => [String(x.id), x]));
        for (const c of [...container.children])
            if (!want.has(c.dataset.id)) {
                c.stop();
                c.remove();
            }
        const have = new Set([...container.children].map((c) => c.dataset.id));
        for (const [id, x] of want)
            if (!have.has(id))
                container.append(liveChart(kind, x.id, { label: x.name }));
    }

    function drawCharts(hostItems, vmPage) {
        syncCharts(hostCharts, hostItems.slice(0, CHART_HOSTS), 'host');
        const running = vmPage.items.filter((v) => v.actual_power === 'running' || v.actual_power === 'paused');
        syncCharts(vmCharts, running.slice(0, CHART_VMS), 'vm');
        vmChartsNote.textContent = running.length > CHART_VMS || vmPage.next_offset
            ? `The first ${CHART_VMS} running VMs; every VM has its chart on the VMs page.`
            : running.length ? '' : 'No VM is running.';
        vmChartsNote.hidden = !vmChartsNote.textContent;
        hostChartsNote.hidden = hostItems.length > 0;
    }

    function drawTasks(items) {
        clear(tasks, h('h2', { id: 'tasks-h' }, link('/admin/tasks', 'Running tasks')),
            items.length ? h('ul', { class: 'bars' }, items.map((t) => h('li', {},
                h('span', {}, `#${t.id} ${t.kind}`),
                h('progress', { max: 100, value: t.progress || 0, 'aria-label': `task ${t.id} progress` }),
                h('span', {}, `${t.progress || 0}%`))))
                : h('p', { class: 'muted' }, 'No task is running.'));
    }

    load();
    return () => {
        stopped = true;
        clearTimeout(timer);
        for (const c of [...hostCharts.children, ...vmCharts.children])
            c.stop();
    };
}
