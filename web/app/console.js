// A desktop in the browser: noVNC (vendored, web/vendor/novnc) over the
// WebSocket URL that POST /desktops/{id}/connect returns.  The ticket in
// that URL works once and for seconds, so every (re)connection asks the
// broker for a new one.  A dropped connection is retried with back-off; a
// disconnect the person asked for (here, from another device, or an admin's)
// is not.

import RFB from '../vendor/novnc/core/rfb.js';
import { api, errorText } from './api.js';
import { h, busy, confirmDialog, toast } from './ui.js';
import { navigate } from './main.js';

const RETRY_MS = [1000, 2000, 4000, 8000, 15000];

export function renderConsole(main, poolId) {
    const screen = h('div', { class: 'console-screen', 'aria-label': 'Remote desktop' });
    const status = h('span', { class: 'console-status', role: 'status', 'aria-live': 'polite' }, 'Connecting…');
    const title = h('h1', { class: 'console-title' }, 'Desktop');
    let rfb = null;
    let wanted = true; // false once the person disconnects or leaves the page
    let attempt = 0;
    let retryTimer = null;
    let seenRequest = null; // the session's disconnect_requested_at when we last connected

    const fullBtn = h('button', { type: 'button', class: 'btn btn-quiet', onclick: fullscreen }, 'Full screen');
    const cadBtn = h('button', { type: 'button', class: 'btn btn-quiet', disabled: true,
        onclick: () => rfb && rfb.sendCtrlAltDel() }, 'Ctrl+Alt+Del');
    const discBtn = h('button', { type: 'button', class: 'btn btn-quiet', onclick: () => leave() }, 'Disconnect');
    const logoffBtn = h('button', { type: 'button', class: 'btn btn-danger', onclick: logoff }, 'Log off');
    const retryBtn = h('button', { type: 'button', class: 'btn btn-primary', hidden: true,
        onclick: () => { attempt = 0; retryBtn.textContent = 'Reconnect'; connect(); } }, 'Reconnect');

    const bar = h('div', { class: 'console-bar' },
        h('a', { href: '/desktops', dataset: { link: '' }, class: 'btn btn-quiet' }, '← Desktops'),
        title, status, retryBtn,
        h('div', { class: 'console-actions' }, cadBtn, fullBtn, discBtn, logoffBtn));
    const wrap = h('div', { class: 'console' }, bar, screen);
    main.append(wrap);

    function setStatus(text, kind = '') {
        status.textContent = text;
        status.className = `console-status ${kind}`;
    }

    async function connect() {
        clearTimeout(retryTimer);
        retryBtn.hidden = true;
        setStatus(attempt ? `Reconnecting (attempt ${attempt + 1})…` : 'Connecting…');
        let res;
        try {
            res = await api('POST', `/desktops/${poolId}/connect`, { protocol: 'browser' });
        } catch (e) {
            if (!wanted)
                return;
            if (e.code === 'no_desktop_ready' || e.status === 0 || e.status === 503)
                return retryLater(errorText(e));
            setStatus(errorText(e), 'bad');
            retryBtn.hidden = false;
            return;
        }
        if (!wanted)
            return;
        title.textContent = res.vm && res.vm.name ? res.vm.name : 'Desktop';
        document.title = `${title.textContent} · Atrium`;
        try {
            rfb = new RFB(screen, res.browser.websocket_url, { shared: true });
        } catch (e) {
            setStatus(`The console cannot start: ${e.message}`, 'bad');
            retryBtn.hidden = false;
            return;
        }
        rfb.scaleViewport = true;
        rfb.resizeSession = false;
        rfb.focusOnClick = true;
        rfb.background = '#111';
        rfb.addEventListener('connect', async () => {
            attempt = 0;
            cadBtn.disabled = false;
            setStatus('Connected', 'good');
            rfb.focus();
            // A later disconnect request (the person from another device, or
            // an admin) shows as a new disconnect_requested_at.
            const s = await mySession();
            if (s !== undefined)
                seenRequest = s ? s.disconnect_requested_at : null;
        });
        rfb.addEventListener('disconnect', async (e) => {
            cadBtn.disabled = true;
            rfb = null;
            if (!wanted)
                return;
            // Logged off (by an admin, or from another device): connecting
            // again would start a new session, so only on request.
            const s = await mySession();
            if (s === null || (s && s.state === 'logging_off')) {
                setStatus('Your session was logged off.', 'warn');
                retryBtn.textContent = 'Start a new session';
                retryBtn.hidden = false;
                return;
            }
            // Disconnected on request: reconnecting by itself would undo it.
            if (s && s.disconnect_requested_at && s.disconnect_requested_at !== seenRequest) {
                seenRequest = s.disconnect_requested_at;
                setStatus('This desktop was disconnected from another device or by an administrator. It keeps running.', 'warn');
                retryBtn.textContent = 'Reconnect';
                retryBtn.hidden = false;
                return;
            }
            retryLater(e.detail.clean ? 'The desktop closed the connection.' : 'The connection was lost.');
        });
        rfb.addEventListener('securityfailure', (e) => {
            setStatus(`The gateway refused the connection${e.detail.reason ? `: ${e.detail.reason}` : ''}.`, 'bad');
        });
    }

    // This pool's live session: the object, null when there is none, or
    // undefined when the broker cannot tell (unreachable: keep trying).
    async function mySession() {
        try {
            const d = ((await api('GET', '/desktops')).items || []).find((x) => String(x.id) === String(poolId));
            return d && d.session ? d.session : null;
        } catch (e) {
            return undefined;
        }
    }

    function retryLater(why) {
        if (attempt >= RETRY_MS.length) {
            setStatus(`${why} Reconnecting did not work.`, 'bad');
            retryBtn.hidden = false;
            return;
        }
        const ms = RETRY_MS[attempt++];
        setStatus(`${why} Reconnecting in ${Math.round(ms / 1000)} s…`, 'warn');
        retryTimer = setTimeout(connect, ms);
    }

    async function fullscreen() {
        try {
            if (document.fullscreenElement) {
                await document.exitFullscreen();
                return;
            }
            await wrap.requestFullscreen();
            // In full screen, ask for the keys the browser would otherwise
            // keep (Esc, Alt+Tab, Ctrl+W…) so they reach the desktop.
            if (navigator.keyboard && navigator.keyboard.lock)
                await navigator.keyboard.lock().catch(() => {});
        } catch (e) {
            toast('Full screen is not available here.', 'error');
        }
    }

    function stop() {
        wanted = false;
        clearTimeout(retryTimer);
        if (rfb) {
            rfb.disconnect();
            rfb = null;
        }
        if (navigator.keyboard && navigator.keyboard.unlock)
            navigator.keyboard.unlock();
    }

    function leave() {
        stop();
        navigate('/desktops');
    }

    async function logoff() {
        if (!await confirmDialog('Log off from this desktop? Unsaved work in it is lost.', 'Log off'))
            return;
        await busy(logoffBtn, async () => {
            stop();
            await api('POST', `/desktops/${poolId}/logoff`);
            toast('Logged off.', 'ok');
            navigate('/desktops');
        });
    }

    connect();
    return stop;
}
