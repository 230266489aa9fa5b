// The browser console end to end (run by test-console.sh): uma opens her
// desktop in the browser; noVNC's canvas must show what QEMU shows (pixel
// comparison with QMP screendump, and the guest's text is there), keys typed
// into the page must reach the guest (its serial log echoes the typed line),
// and when displayd restarts under the page, the page reconnects by itself
// with a new one-time ticket and shows the guest again.
//
// usage: node console.test.mjs PATH/TO/playwright-core/index.mjs   (env from test-console.sh)

import { execFileSync, spawn } from 'node:child_process';
import { openSync, readFileSync, writeFileSync } from 'node:fs';
import { check, fail, finish, ok, sleep } from './check.mjs';

const { chromium } = await import(process.argv[2]);
const env = process.env;
const base = env.ATRIUM_WEB_BASE;
const tmp = env.ATRIUM_WEB_TMP;
const shots = env.ATRIUM_WEB_SHOTS;


// QEMU's own picture of the screen, as {w, h, rgb}.
function screendump() {
    const file = `${tmp}/qemu.ppm`;
    execFileSync('python3', [env.ATRIUM_WEB_HELPER, 'screendump', env.ATRIUM_WEB_QMP, file]);
    const b = readFileSync(file);
    // P6 <w> <h> <max>\n<binary>; header tokens separated by whitespace
    const tokens = [];
    let i = 0;
    while (tokens.length < 4) {
        while (/\s/.test(String.fromCharCode(b[i]))) i++;
        let t = '';
        while (!/\s/.test(String.fromCharCode(b[i]))) t += String.fromCharCode(b[i++]);
        tokens.push(t);
    }
    if (tokens[0] !== 'P6' || tokens[3] !== '255')
        throw new Error(`unexpected screendump header ${tokens.join(' ')}`);
    return { w: Number(tokens[1]), h: Number(tokens[2]), rgb: b.subarray(i + 1) };
}

// noVNC's canvas as {w, h, rgba}.
async function canvas(page) {
    const c = await page.evaluate(() => {
        const el = document.querySelector('.console-screen canvas');
        if (!el || !el.width)
            return null;
        const d = el.getContext('2d').getImageData(0, 0, el.width, el.height).data;
        let s = '';
        for (let i = 0; i < d.length; i += 0x8000)
            s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
        return { w: el.width, h: el.height, b64: btoa(s) };
    });
    return c && { w: c.w, h: c.h, rgba: Buffer.from(c.b64, 'base64') };
}

// Compare the canvas with QEMU: same size, pixels that differ by more than
// 20% in a channel, and how many pixels are lit (the guest's text).
async function compareScreens(page) {
    const c = await canvas(page);
    const q = screendump();
    if (!c)
        return { why: 'no canvas' };
    if (c.w !== q.w || c.h !== q.h)
        return { why: `canvas ${c.w}x${c.h}, QEMU ${q.w}x${q.h}` };
    let differ = 0, lit = 0;
    for (let p = 0; p < c.w * c.h; p++) {
        const r = c.rgba[4 * p], g = c.rgba[4 * p + 1], bl = c.rgba[4 * p + 2];
        if (Math.abs(r - q.rgb[3 * p]) > 51 || Math.abs(g - q.rgb[3 * p + 1]) > 51 || Math.abs(bl - q.rgb[3 * p + 2]) > 51)
            differ++;
        if (r + g + bl > 3 * 64)
            lit++;
    }
    return { w: c.w, h: c.h, differ, lit, total: c.w * c.h };
}

// Poll until the canvas matches QEMU's screen (the picture arrives in updates).
async function waitSameScreen(page, what, ms = 30000) {
    const end = Date.now() + ms;
    let last;
    while (Date.now() < end) {
        last = await compareScreens(page);
        if (!last.why && last.lit > 500 && last.differ * 100 < last.total) {
            ok(`${what}: the canvas shows QEMU's screen (${last.w}x${last.h}, ${last.lit} lit pixels, ${last.differ} differ)`);
            return true;
        }
        await sleep(500);
    }
    fail(`${what}: the canvas shows QEMU's screen`, last.why || `${last.lit} lit, ${last.differ} of ${last.total} differ`);
    return false;
}

async function waitSerial(text, ms = 30000) {
    const end = Date.now() + ms;
    while (Date.now() < end) {
        if (readFileSync(env.ATRIUM_WEB_SERIAL, 'utf8').includes(text))
            return true;
        await sleep(250);
    }
    return false;
}

async function waitStatus(page, re, ms) {
    await page.waitForFunction((src) => new RegExp(src).test(document.querySelector('.console-status')?.textContent || ''),
        re.source, { timeout: ms });
}

const browser = await chromium.launch({
    executablePath: env.ATRIUM_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--no-first-run',
        '--disable-component-update', '--disable-sync'],
});
try {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
    const sockets = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));

    await page.goto(`${base}/`);
    await page.getByLabel('User name').fill('uma');
    await page.getByLabel('Password').fill('user pw');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { name: 'My desktops' }).waitFor({ timeout: 10000 });
    await page.locator('article.desktop', { hasText: 'desk' }).getByRole('link', { name: 'Open in browser' }).click();
    await waitStatus(page, /^Connected$/, 30000);
    ok('the browser console connects through displayd');
    await waitSameScreen(page, 'first connection');
    const before = await compareScreens(page);
    await page.screenshot({ path: `${shots}/console.png` });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    await page.screenshot({ path: `${shots}/console-phone.png` });
    await page.setViewportSize({ width: 1280, height: 800 });

    // Keys typed into the page reach the guest's tty1.
    await page.locator('.console-screen canvas').click();
    await page.keyboard.type('mark webtest', { delay: 60 });
    await page.keyboard.press('Enter');
    check(await waitSerial('ATRIUM-TYPED: mark webtest'), 'typed keys reach the guest (its serial echoes the line)');
    check(await waitSerial('ATRIUM-MARK-WRITTEN: webtest'), 'the guest ran the typed command');
    await waitSameScreen(page, 'after typing');
    const after = await compareScreens(page);
    check(after.lit > before.lit, 'the typed line shows on the canvas', `${before.lit} -> ${after.lit} lit pixels`);

    // displayd restarts under the page: it reconnects with a new ticket.
    const nSockets = sockets.length;
    process.kill(Number(env.ATRIUM_WEB_DISPLAYD_PID), 'SIGTERM');
    await waitStatus(page, /Reconnecting/, 20000);
    ok('a dropped gateway is noticed and retried');
    const log = openSync(`${tmp}/displayd2.log`, 'w');
    const d2 = spawn(env.ATRIUM_WEB_DISPLAYD, ['--config', env.ATRIUM_WEB_CONF], { stdio: ['ignore', 'ignore', log] });
    writeFileSync(`${tmp}/displayd2.pid`, String(d2.pid));
    await waitStatus(page, /^Connected$/, 60000);
    ok('the console reconnects by itself once the gateway is back');
    const tickets = new Set(sockets.map((u) => new URL(u).searchParams.get('ticket')));
    check(sockets.length > nSockets && tickets.size === sockets.length, 'every connection used a new ticket',
        `${sockets.length} sockets, ${tickets.size} tickets`);
    await waitSameScreen(page, 'after reconnecting');

    await page.getByRole('button', { name: 'Disconnect' }).click();
    await page.getByRole('heading', { name: 'My desktops' }).waitFor({ timeout: 10000 });
    ok('Disconnect returns to My desktops');
    // While displayd was down, chromium and noVNC log the refused sockets.
    const unexpected = problems.filter((p) => !/WebSocket connection to|Failed when connecting|Connection closed/.test(p));
    check(unexpected.length === 0, 'no other console errors or CSP violations', unexpected.join(' | '));
} catch (e) {
    fail('console test', e.message.split('\n')[0]);
} finally {
    await browser.close();
}
finish();
