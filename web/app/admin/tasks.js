// Tasks: long operations with their progress.  While any task on the page
// is queued or running, the page refreshes itself.

import { h, badge, fmtAgo, fmtTime, listView } from '../ui.js';

const REFRESH_MS = 3000;

export function renderTasks(main) {
    let timer = null;
    const list = listView({
        path: '/tasks',
        caption: 'Tasks',
        empty: 'No tasks match.',
        filters: [
            { name: 'state', label: 'State', type: 'select',
                options: ['queued', 'running', 'succeeded', 'failed', 'cancelled'].map((s) => [s, s]) },
            { name: 'kind', label: 'Kind', placeholder: 'e.g. vm.reset' },
        ],
        rowClass: (t) => (t.state === 'failed' ? 'row-bad' : ''),
        onData: (rows) => {
            clearTimeout(timer);
            if (rows.some((t) => t.state === 'queued' || t.state === 'running'))
                timer = setTimeout(() => list.reload(), REFRESH_MS);
        },
        columns: [
            { label: 'Task', value: (t) => h('span', {}, h('strong', {}, `#${t.id} ${t.kind}`)) },
            { label: 'State', value: (t) => badge(t.state) },
            { label: 'Progress', value: (t) => h('span', {},
                h('progress', { max: 100, value: t.progress || 0, 'aria-label': `task ${t.id} progress` }),
                ` ${t.progress || 0}%`, t.message ? h('div', { class: 'muted small' }, t.message) : null,
                t.error ? h('div', { class: 'detail' }, t.error) : null) },
            { label: 'Target', value: (t) => [t.pool_id && `pool #${t.pool_id}`, t.vm_id && `VM #${t.vm_id}`,
                t.host_id && `host #${t.host_id}`, t.image_version_id && `image v${t.image_version_id}`].filter(Boolean).join(', ') || '—' },
            { label: 'Attempts', value: (t) => String(t.attempts ?? 0) },
            { label: 'Created', value: (t) => h('span', { title: fmtTime(t.created_at) }, fmtAgo(t.created_at)) },
            { label: 'Finished', value: (t) => (t.finished_at ? h('span', { title: fmtTime(t.finished_at) }, fmtAgo(t.finished_at)) : '—') },
        ],
    });
    main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Tasks'),
        h('button', { type: 'button', class: 'btn', onclick: () => list.reload() }, 'Refresh')), list.el);
    return () => clearTimeout(timer);
}
