// Users: list (filter by role), create a local user, change role, disable
// or enable, set a new password.

import { api, errorText } from '../api.js';
import { h, badge, busy, confirmDialog, field, fmtAgo, listView, messageBox, modal, select, toast } from '../ui.js';
import { session } from '../main.js';

const ROLES = [['user', 'user'], ['operator', 'operator'], ['admin', 'admin']];

function userForm(onDone) {
    const msg = messageBox();
    const btn = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create user');
    const form = h('form', {}, h('div', { class: 'grid-form' },
        field('User name', h('input', { name: 'username', required: true, maxlength: 128, autocomplete: 'off' })),
        field('Password', h('input', { name: 'password', type: 'password', required: true, autocomplete: 'new-password' })),
        field('Role', select('role', ROLES, 'user'))), msg, h('div', { class: 'actions' }, btn));
    form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const fd = new FormData(form);
        const body = { username: String(fd.get('username')).trim(), password: String(fd.get('password')), role: fd.get('role') };
        if (!body.username || !body.password) {
            msg.show('A user name and a password are needed.');
            return;
        }
        await busy(btn, async () => {
            await api('POST', '/users', body);
            toast(`User ${body.username} created.`, 'ok');
            onDone();
        }, msg);
    });
    return form;
}

function editForm(u, onDone) {
    const msg = messageBox();
    const btn = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Save');
    const form = h('form', {}, h('div', { class: 'grid-form' },
        field('Role', select('role', ROLES, u.role)),
        field('New password', h('input', { name: 'password', type: 'password', autocomplete: 'new-password' }),
            u.source === 'local' ? 'leave empty to keep' : 'only for local users')),
        h('div', { class: 'checks' }, h('label', {}, h('input', { type: 'checkbox', name: 'disabled', checked: u.disabled }), 'Disabled')),
        msg, h('div', { class: 'actions' }, btn));
    form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const fd = new FormData(form);
        const body = {};
        if (fd.get('role') !== u.role)
            body.role = fd.get('role');
        if ((fd.get('disabled') === 'on') !== !!u.disabled)
            body.disabled = fd.get('disabled') === 'on';
        if (fd.get('password'))
            body.password = String(fd.get('password'));
        if (!Object.keys(body).length) {
            msg.show('Nothing changed.', 'info');
            return;
        }
        await busy(btn, async () => {
            await api('PATCH', `/users/${u.id}`, body);
            toast(`User ${u.username} updated.`, 'ok');
            onDone();
        }, msg);
    });
    return form;
}

// Which roles must use two-step log-in (TOTP).  People of a role that
// becomes required and have none enrol at their next log-in.
function totpPolicy(isAdmin) {
    const msg = messageBox();
    // Nothing can be changed until the current policy is shown: a box ticked
    // before that would be reset by the late answer and saved wrong.
    const boxes = ROLES.map(([role]) => h('input', { type: 'checkbox', name: role, disabled: true }));
    const save = h('button', { type: 'submit', class: 'btn btn-primary', hidden: !isAdmin, disabled: true }, 'Save');
    const form = h('form', { class: 'card policy', 'aria-labelledby': 'totp-h' },
        h('h2', { id: 'totp-h' }, 'Two-step log-in required for'),
        h('div', { class: 'checks' }, ROLES.map(([role, text], i) => h('label', {}, boxes[i], `${text}s`)), save),
        msg);
    const show = (pol) => ROLES.forEach(([role], i) => { boxes[i].checked = !!pol[role]; });
    api('GET', '/policies/totp').then((pol) => {
        show(pol);
        boxes.forEach((b) => { b.disabled = !isAdmin; });
        save.disabled = !isAdmin;
    }).catch((e) => msg.show(errorText(e)));
    form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const body = Object.fromEntries(ROLES.map(([role], i) => [role, boxes[i].checked]));
        await busy(save, async () => {
            show(await api('PATCH', '/policies/totp', body));
            const req = ROLES.filter(([role]) => body[role]).map(([, t]) => `${t}s`);
            toast(req.length ? `Two-step log-in is now required for ${req.join(', ')}.` : 'Two-step log-in is required for nobody.', 'ok');
        }, msg);
    });
    return form;
}

export function renderUsers(main) {
    let list;
    const isAdmin = session.user && session.user.role === 'admin';
    const create = h('button', { type: 'button', class: 'btn btn-primary', hidden: !isAdmin, onclick: () => {
        const dlg = modal('New user', userForm(() => {
            dlg.close();
            list.reload();
        }));
        dlg.dialog.querySelector('input').focus();
    } }, 'New user');
    list = listView({
        path: '/users',
        caption: 'Users',
        filters: [{ name: 'role', label: 'Role', type: 'select', options: ROLES }],
        columns: [
            { label: 'User', value: (u) => h('span', {}, h('strong', {}, u.username), ` #${u.id}`,
                u.display_name ? h('div', { class: 'muted small' }, u.display_name) : null) },
            { label: 'Role', value: (u) => u.role },
            { label: 'Source', value: (u) => u.source },
            { label: 'Status', value: (u) => (u.disabled ? badge('disabled')
                : u.locked_until && new Date(u.locked_until) > new Date() ? badge('locked') : badge('active')) },
            { label: 'Second factor', value: (u) => (u.totp_enabled ? 'TOTP' : '—') },
            { label: 'Last log-in', value: (u) => fmtAgo(u.last_login_at) },
        ],
        actions: isAdmin ? (u, reload) => [
            h('button', { type: 'button', class: 'btn', onclick: () => {
                const dlg = modal(`Edit ${u.username}`, editForm(u, () => {
                    dlg.close();
                    reload();
                }));
            } }, 'Edit'),
            u.totp_enabled ? h('button', { type: 'button', class: 'btn btn-danger', onclick: async (e) => {
                if (!await confirmDialog(`Reset two-step log-in of ${u.username}? They set it up again at their next log-in if their role requires it.`, 'Reset'))
                    return;
                await busy(e.target, async () => {
                    await api('DELETE', `/users/${u.id}/totp`);
                    toast(`Two-step log-in of ${u.username} reset.`, 'ok');
                    reload();
                });
            } }, 'Reset 2-step') : null,
            u.locked_until && new Date(u.locked_until) > new Date() ? h('button', { type: 'button', class: 'btn', onclick: async (e) => {
                await busy(e.target, async () => {
                    await api('POST', `/users/${u.id}/unlock`);
                    toast(`${u.username} can log in again.`, 'ok');
                    reload();
                });
            } }, 'Unlock') : null,
        ] : undefined,
    });
    main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Users'), create), totpPolicy(isAdmin), list.el);
}
