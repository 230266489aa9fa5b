// Log-in: user name and password, then the TOTP code when the broker
// answers totp_required.  The password stays in this closure only for the
// second step and is dropped afterwards.

import { api, ApiError, errorText } from './api.js';
import { h, field, messageBox } from './ui.js';
import { loggedIn, navigate, isStaff } from './main.js';

export function renderLogin(main) {
    let pending = null; // {username, password} while the code is asked for
    const msg = messageBox();
    const user = h('input', { name: 'username', autocomplete: 'username', required: true,
        autocapitalize: 'none', spellcheck: 'false', maxlength: '128' });
    const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password',
        required: true });
    const code = h('input', { name: 'totp', autocomplete: 'one-time-code', maxlength: '64',
        autocapitalize: 'none', spellcheck: 'false' });
    const codeField = field('Authenticator code', code, '6 digits from your authenticator app, or a recovery code');
    codeField.hidden = true;
    const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block' }, 'Log in');
    const back = h('button', { type: 'button', class: 'btn btn-quiet btn-block', hidden: true,
        onclick: () => reset() }, 'Use another account');
    const creds = h('div', {}, field('User name', user), field('Password', pass));

    const form = h('form', { class: 'login-form', novalidate: false }, creds, codeField, msg, submit, back);

    function reset() {
        pending = null;
        creds.hidden = false;
        codeField.hidden = true;
        code.required = false;
        back.hidden = true;
        code.value = '';
        msg.hide();
        pass.value = '';
        user.focus();
    }

    form.addEventListener('submit', async (e) => {
        e.preventDefault();
        msg.hide();
        const body = pending ? { ...pending, totp: code.value.replace(/\s+/g, '') }
            : { username: user.value.trim(), password: pass.value };
        if (!body.username || !body.password) {
            msg.show('Enter your user name and password.');
            return;
        }
        submit.disabled = true;
        submit.textContent = 'Logging in…';
        try {
            const res = await api('POST', '/login', body);
            pending = null;
            loggedIn(res.user, res.csrf_token, res.totp_enrollment_required);
            if (res.totp_enrollment_required) {
                navigate('/enrol', { replace: true });
                return;
            }
            const next = new URLSearchParams(location.search).get('next');
            navigate(next && next.startsWith('/') && !next.startsWith('//') ? next
                : isStaff(res.user) ? '/admin' : '/desktops', { replace: true });
            return;
        } catch (err) {
            if (err instanceof ApiError && err.code === 'totp_required') {
                if (pending)
                    msg.show('That code was not accepted. Enter the current code.');
                pending = { username: body.username, password: body.password };
                creds.hidden = true;
                codeField.hidden = false;
                code.required = true;
                back.hidden = false;
                code.value = '';
                code.focus();
            } else {
                msg.show(errorText(err));
                if (!pending)
                    pass.select();
            }
        } finally {
            submit.disabled = false;
            submit.textContent = pending ? 'Verify code' : 'Log in';
        }
    });

    main.append(h('div', { class: 'login-wrap' },
        h('div', { class: 'login-card' },
            h('div', { class: 'login-brand', 'aria-hidden': 'true' }, 'Atrium'),
            h('h1', {}, 'Log in'),
            h('p', { class: 'muted' }, 'Your desktops, wherever you are.'),
            form)));
    setTimeout(() => user.focus());
}
