// Two-step log-in (TOTP) enrolment for the person logged in: a QR code of
// the otpauth:// URI (and the secret as text, for typing), the first code
// to prove the app works, then the recovery codes, shown this once.  A
// person whose role requires TOTP lands here right after the password and
// can do nothing else until it is done.

import qrcode from '../vendor/qrcode-generator/qrcode.mjs';
import { api, errorText } from './api.js';
import { h, clear, field, messageBox, busy } from './ui.js';
import { session, navigate, enrolled, logout } from './main.js';

const SVG = 'http://www.w3.org/2000/svg';

// The QR code as SVG, drawn with DOM calls (no markup, no inline style).
function qrSvg(text) {
    const qr = qrcode(0, 'M');
    qr.addData(text);
    qr.make();
    const n = qr.getModuleCount();
    const q = 4; // quiet zone
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', `0 0 ${n + 2 * q} ${n + 2 * q}`);
    svg.setAttribute('class', 'qr');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', 'QR code for your authenticator app');
    const bg = document.createElementNS(SVG, 'rect');
    bg.setAttribute('width', String(n + 2 * q));
    bg.setAttribute('height', String(n + 2 * q));
    bg.setAttribute('fill', '#fff');
    svg.append(bg);
    let d = '';
    for (let r = 0; r < n; r++)
        for (let c = 0; c < n; c++)
            if (qr.isDark(r, c))
                d += `M${c + q} ${r + q}h1v1h-1z`;
    const path = document.createElementNS(SVG, 'path');
    path.setAttribute('d', d);
    path.setAttribute('fill', '#000');
    svg.append(path);
    return svg;
}

export function renderEnrol(main) {
    const msg = messageBox();
    const box = h('div', { class: 'card enrol' });
    const required = !!session.enrolOnly;
    main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Set up two-step log-in'),
        h('button', { type: 'button', class: 'btn', onclick: required ? logout : () => navigate('/desktops') },
            required ? 'Log out' : 'Cancel')),
        required ? h('p', { class: 'msg msg-info' },
            'Your role requires a second factor. Set it up now to continue; it takes a minute.') : null,
        msg, box);

    async function begin() {
        let res;
        try {
            res = await api('POST', '/me/totp');
        } catch (e) {
            msg.show(errorText(e));
            return;
        }
        const uri = res.otpauth_uri;
        const secret = new URL(uri).searchParams.get('secret') || '';
        const code = h('input', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code',
            required: true, maxlength: 8 });
        const btn = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Confirm');
        const formMsg = messageBox();
        const form = h('form', {}, field('Code from the app', code, 'the 6 digits it shows now'),
            formMsg, h('div', { class: 'actions' }, btn));
        clear(box,
            h('ol', { class: 'steps' },
                h('li', {}, 'Open an authenticator app on your phone (FreeOTP, Aegis, Google Authenticator…).'),
                h('li', {}, 'Scan this code, or type the key below.'),
                h('li', {}, 'Enter the code the app shows.')),
            h('div', { class: 'qr-wrap' }, qrSvg(uri)),
            h('p', {}, 'Key: ', h('code', { class: 'secret' }, secret.replace(/(.{4})/g, '$1 ').trim())),
            h('p', { class: 'small' }, h('a', { href: uri, class: 'otpauth' }, 'Open in an authenticator app on this device')),
            form);
        code.focus();
        form.addEventListener('submit', async (e) => {
            e.preventDefault();
            const value = code.value.replace(/\s+/g, '');
            if (!value) {
                formMsg.show('Enter the code your app shows.');
                return;
            }
            await busy(btn, async () => {
                const done = await api('POST', '/me/totp/confirm', { code: value });
                showRecovery(done.recovery_codes || []);
            }, formMsg);
        });
    }

    function showRecovery(codes) {
        const go = h('button', { type: 'button', class: 'btn btn-primary', onclick: async () => {
            await enrolled();
        } }, 'I have saved them — continue');
        clear(box,
            h('p', { class: 'msg msg-ok', role: 'status' }, 'Two-step log-in is on.'),
            h('h2', {}, 'Recovery codes'),
            h('p', {}, 'Each works once instead of a code from the app, if you lose your phone. ',
                'Save them somewhere safe now: they are not shown again.'),
            h('ul', { class: 'recovery' }, codes.map((c) => h('li', {}, h('code', {}, c)))),
            h('div', { class: 'actions' }, go));
        go.focus();
    }

    if (!session.user && !required) {
        navigate('/login', { replace: true });
        return null;
    }
    begin();
    return null;
}
