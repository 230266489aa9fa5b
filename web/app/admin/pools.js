// Pools: list (server-paged), create/edit with validation, resize, push
// an image version, entitle a user or group, delete.  The broker and
// pool-manager validate again; their sentence is shown when they refuse.

import { api, errorText, qs } from '../api.js';
import { h, badge, busy, confirmDialog, field, listView, messageBox, modal, select, toast, fmtMiB } from '../ui.js';

const PROTOCOLS = [['browser', 'Browser (noVNC)'], ['spice', 'SPICE (.vv)'], ['rdp', 'RDP (.rdp)'], ['vnc', 'VNC']];
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

function num(name, value, min, max, extra = {}) {
    return h('input', { name, type: 'number', inputmode: 'numeric', min, max, step: 1, value: String(value), required: true, ...extra });
}

// Check the form the way pool_validate will; returns a sentence or null.
function validate(v) {
    if (!NAME_RE.test(v.name))
        return 'The name must be 1–63 letters, digits, ".", "_" or "-", starting with a letter or digit.';
    for (const [k, label, min, max] of [['vcpus', 'vCPUs', 1, 256], ['memory_mb', 'Memory', 64, 4194304],
        ['disk_gb', 'Disk', 1, 65536], ['min_size', 'Minimum size', 0, 10000], ['max_size', 'Maximum size', 0, 10000],
        ['spare', 'Spares', 0, 10000], ['idle_timeout_s', 'Idle timeout', 0, 2147483647],
        ['disconnect_timeout_s', 'Disconnect timeout', 0, 2147483647]])
        if (!Number.isInteger(v[k]) || v[k] < min || v[k] > max)
            return `${label} must be a whole number from ${min} to ${max}.`;
    if (v.min_size > v.max_size)
        return `The minimum size (${v.min_size}) must not be larger than the maximum size (${v.max_size}).`;
    if (v.spare > v.max_size)
        return `Spares (${v.spare}) must not be more than the maximum size (${v.max_size}).`;
    if (!v.protocols.length)
        return 'Offer at least one way to connect.';
    return null;
}

function poolForm(pool, onSaved) {
    const p = pool || { name: '', description: '', vcpus: 2, memory_mb: 2048, disk_gb: 20,
        protocols: ['spice', 'rdp', 'vnc', 'browser'], assignment: 'floating', min_size: 0, max_size: 10,
        spare: 1, idle_timeout_s: 0, disconnect_timeout_s: 3600, power_policy: 'on', enabled: true,
        image_version_id: null };
    const msg = messageBox();
    const save = h('button', { type: 'submit', class: 'btn btn-primary' }, pool ? 'Save changes' : 'Create pool');
    const form = h('form', { class: 'pool-form', novalidate: true },
        h('div', { class: 'grid-form' },
            field('Name', h('input', { name: 'name', value: p.name, required: true, maxlength: 63,
                pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]{0,62}', autocomplete: 'off' }), 'letters, digits, . _ -'),
            field('Description', h('input', { name: 'description', value: p.description || '', maxlength: 1024 })),
            field('Assignment', select('assignment', [['floating', 'Floating (fresh at log-off)'],
                ['dedicated', 'Dedicated (kept per person)']], p.assignment)),
            field('Power policy', select('power_policy', [['on', 'Spares running'], ['paused', 'Spares paused'],
                ['off', 'Spares off']], p.power_policy)),
            field('Clones', select('clone', [['linked', 'Linked (each VM boots)'],
                ['instant', 'Instant (resumed from a running template)']], p.clone || 'linked'))),
        h('fieldset', {}, h('legend', {}, 'Size'), h('div', { class: 'grid-form' },
            field('Minimum VMs', num('min_size', p.min_size, 0, 10000)),
            field('Maximum VMs', num('max_size', p.max_size, 0, 10000)),
            field('Spare (ready) VMs', num('spare', p.spare, 0, 10000)))),
        h('fieldset', {}, h('legend', {}, 'Each VM'), h('div', { class: 'grid-form' },
            field('vCPUs', num('vcpus', p.vcpus, 1, 256)),
            field('Memory (MiB)', num('memory_mb', p.memory_mb, 64, 4194304)),
            field('Disk (GiB)', num('disk_gb', p.disk_gb, 1, 65536)),
            field('Image version id', h('input', { name: 'image_version_id', type: 'number', min: 0, step: 1,
                value: p.image_version_id ? String(p.image_version_id) : '' }), 'empty: no image yet'))),
        h('fieldset', {}, h('legend', {}, 'Connections'),
            h('div', { class: 'checks' }, PROTOCOLS.map(([v, text]) => h('label', {},
                h('input', { type: 'checkbox', name: 'protocols', value: v, checked: p.protocols.includes(v) }), text))),
            h('div', { class: 'grid-form' },
                field('Idle timeout (s)', num('idle_timeout_s', p.idle_timeout_s, 0, 2147483647), '0: never'),
                field('Disconnected timeout (s)', num('disconnect_timeout_s', p.disconnect_timeout_s, 0, 2147483647)))),
        h('div', { class: 'checks' }, h('label', {}, h('input', { type: 'checkbox', name: 'enabled', checked: p.enabled }),
            'Enabled (people can connect)')),
        msg, h('div', { class: 'actions' }, save));

    form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const fd = new FormData(form);
        const v = {
            name: String(fd.get('name')).trim(),
            description: String(fd.get('description')),
            assignment: fd.get('assignment'),
            power_policy: fd.get('power_policy'),
            clone: fd.get('clone'),
            protocols: fd.getAll('protocols'),
            enabled: fd.get('enabled') === 'on',
        };
        for (const k of ['vcpus', 'memory_mb', 'disk_gb', 'min_size', 'max_size', 'spare', 'idle_timeout_s', 'disconnect_timeout_s'])
            v[k] = fd.get(k) === '' ? NaN : Number(fd.get(k));
        const img = String(fd.get('image_version_id')).trim();
        if (img !== '')
            v.image_version_id = Number(img);
        else if (pool && pool.image_version_id)
            v.image_version_id = 0;
        const bad = validate(v);
        if (bad) {
            msg.show(bad);
            return;
        }
        msg.hide();
        await busy(save, async () => {
            if (pool)
                await api('PATCH', `/pools/${pool.id}`, v);
            else
                await api('POST', '/pools', v);
            toast(pool ? `Pool ${v.name} saved.` : `Pool ${v.name} created.`, 'ok');
            onSaved();
        }, msg);
    });
    return form;
}

// A small one-purpose form in a dialog: fields, a PATCH/POST, feedback.
function smallForm(title, fields, label, submit) {
    const msg = messageBox();
    const btn = h('button', { type: 'submit', class: 'btn btn-primary' }, label);
    const form = h('form', {}, h('div', { class: 'grid-form' }, fields), msg, h('div', { class: 'actions' }, btn));
    const dlg = modal(title, form);
    form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const fd = new FormData(form);
        const err = await busy(btn, async () => {
            await submit(fd);
            dlg.close();
            return null;
        }, msg);
        return err;
    });
    const first = form.querySelector('input,select');
    if (first)
        first.focus();
    return dlg;
}

function resize(p, reload) {
    smallForm(`Resize ${p.name}`, [
        field('Minimum VMs', num('min_size', p.min_size, 0, 10000)),
        field('Maximum VMs', num('max_size', p.max_size, 0, 10000)),
        field('Spare (ready) VMs', num('spare', p.spare, 0, 10000)),
    ], 'Resize', async (fd) => {
        const v = { min_size: Number(fd.get('min_size')), max_size: Number(fd.get('max_size')), spare: Number(fd.get('spare')) };
        if (v.min_size > v.max_size)
            throw new Error(`The minimum size (${v.min_size}) must not be larger than the maximum size (${v.max_size}).`);
        if (v.spare > v.max_size)
            throw new Error(`Spares (${v.spare}) must not be more than the maximum size (${v.max_size}).`);
        await api('PATCH', `/pools/${p.id}`, v);
        toast(`${p.name}: ${v.min_size}–${v.max_size} VMs, ${v.spare} spare. The pool manager takes it from here.`, 'ok');
        reload();
    });
}

async function pushImage(p, reload) {
    let versions = [];
    try {
        for (const i of (await api('GET', `/images${qs({ limit: 500 })}`)).items)
            for (const v of i.versions || [])
                if (v.state === 'ready')
                    versions.push([v.id, `${i.name} v${v.version} (id ${v.id})${v.id === p.image_version_id ? ' — current' : ''}`]);
    } catch (e) {
        versions = null; // no image list: fall back to typing the id
    }
    const hint = 'Spare VMs are rebuilt from this version; VMs in use move to it at log-off. Images come from atriumctl image import.';
    smallForm(`Push an image to ${p.name}`, [
        versions && versions.length
            ? field('Image version', select('image_version_id', [['', 'Choose…'], ...versions], p.image_version_id || ''), hint)
            : field('Image version id', h('input', { name: 'image_version_id', type: 'number', min: 1, step: 1, required: true,
                value: p.image_version_id ? String(p.image_version_id) : '' }), versions ? `No ready image version found. ${hint}` : hint),
    ], 'Push image', async (fd) => {
        const id = Number(fd.get('image_version_id'));
        if (!Number.isInteger(id) || id < 1)
            throw new Error('Enter the id of an image version.');
        await api('PATCH', `/pools/${p.id}`, { image_version_id: id });
        toast(`${p.name} now uses image version ${id}. Follow the rebuild under Tasks.`, 'ok');
        reload();
    });
}

async function entitle(p) {
    let users = [], groups = [], current = [];
    try {
        [users, groups, current] = (await Promise.all([api('GET', `/users${qs({ limit: 500 })}`),
            api('GET', `/groups${qs({ limit: 500 })}`),
            api('GET', `/pools/${p.id}/entitlements${qs({ limit: 500 })}`)])).map((x) => x.items);
    } catch (e) {
        toast(errorText(e), 'error');
        return;
    }
    smallForm(`Entitle to ${p.name}`, [
        h('div', { class: 'field' }, h('strong', {}, 'Entitled now'),
            current.length ? h('ul', { class: 'entitled' }, current.map((e) => {
                const who = e.group_id ? `Group: ${e.group_name}` : `User: ${e.username}`;
                const li = h('li', {}, who, ' ', h('button', { type: 'button', class: 'btn btn-quiet btn-small',
                    'aria-label': `Remove the entitlement of ${who}`,
                    onclick: async (ev) => {
                        if (!await confirmDialog(`Remove ${who} from ${p.name}? Live sessions stay; new connections are refused.`, 'Remove'))
                            return;
                        await busy(ev.target, async () => {
                            await api('DELETE', `/pools/${p.id}/entitlements/${e.id}`);
                            li.remove();
                            toast(`${who} is no longer entitled to ${p.name}.`, 'ok');
                        });
                    } }, 'Remove'));
                return li;
            }))
                : h('span', { class: 'muted' }, 'Nobody yet.')),
        field('Who', select('who', [['', 'Choose…'],
            ...groups.map((g) => [`g${g.id}`, `Group: ${g.name} (${g.members} members)`]),
            ...users.map((u) => [`u${u.id}`, `User: ${u.username}`])], '')),
    ], 'Entitle', async (fd) => {
        const who = String(fd.get('who'));
        if (!who)
            throw new Error('Choose a user or a group.');
        const body = who[0] === 'g' ? { group_id: Number(who.slice(1)) } : { user_id: Number(who.slice(1)) };
        await api('POST', `/pools/${p.id}/entitlements`, body);
        toast(`Entitled to ${p.name}.`, 'ok');
    });
}

export function renderPools(main) {
    let list;
    const create = h('button', { type: 'button', class: 'btn btn-primary', onclick: () => {
        const dlg = modal('New pool', poolForm(null, () => {
            dlg.close();
            list.reload();
        }));
        dlg.dialog.querySelector('input').focus();
    } }, 'New pool');
    list = listView({
        path: '/pools',
        caption: 'Pools',
        empty: 'No pools yet. Create one with “New pool”.',
        rowClass: (p) => (p.vm_states && p.vm_states.failed ? 'row-bad' : ''),
        columns: [
            { label: 'Name', value: (p) => h('span', {}, h('strong', {}, p.name), p.description ? h('div', { class: 'muted small' }, p.description) : null) },
            { label: 'State', value: (p) => badge(p.enabled ? 'enabled' : 'disabled') },
            { label: 'Size', value: (p) => `${p.min_size}–${p.max_size}, ${p.spare} spare` },
            { label: 'VMs', value: (p) => {
                const s = Object.entries(p.vm_states || {});
                return s.length ? h('span', {}, s.map(([k, n]) => [badge(k), ` ${n} `])) : '0';
            } },
            { label: 'Each VM', value: (p) => `${p.vcpus} vCPU, ${fmtMiB(p.memory_mb)}, ${p.disk_gb} GiB` },
            { label: 'Image', value: (p) => (p.image_version_id ? `version ${p.image_version_id}` : 'none') },
            { label: 'Connect by', value: (p) => (p.protocols || []).join(', ') },
            { label: 'Clones', value: (p) => p.clone || 'linked' },
        ],
        actions: (p, reload) => [
            h('button', { type: 'button', class: 'btn', onclick: () => {
                const dlg = modal(`Edit ${p.name}`, poolForm(p, () => {
                    dlg.close();
                    reload();
                }));
            } }, 'Edit'),
            h('button', { type: 'button', class: 'btn', onclick: () => resize(p, reload) }, 'Resize'),
            h('button', { type: 'button', class: 'btn', onclick: () => pushImage(p, reload) }, 'Push image'),
            h('button', { type: 'button', class: 'btn', onclick: () => entitle(p) }, 'Entitle'),
            h('button', { type: 'button', class: 'btn btn-danger', onclick: async (e) => {
                if (!await confirmDialog(`Delete pool ${p.name}? This is refused while it still has VMs.`, 'Delete'))
                    return;
                await busy(e.target, async () => {
                    await api('DELETE', `/pools/${p.id}`);
                    toast(`Pool ${p.name} deleted.`, 'ok');
                    reload();
                });
            } }, 'Delete'),
        ],
    });
    main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Pools'), create), list.el);
}
