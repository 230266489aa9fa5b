// Golden image upload from the admin console, run by test-upload.sh against
// a real broker: the Images page's dialog refuses a vmdk and a file over
// max_image_mb in words, a cancelled upload leaves no version and no file,
// and a qcow2 upload moves the progress bar through intermediate values to
// 100 % (the upload's own progress events; the network is throttled through
// the DevTools protocol so that there are some) and the new version is
// listed without a page reload.
//
// usage: node upload.test.mjs PATH/TO/playwright-core/index.mjs   (env from test-upload.sh)

import { readdirSync } from 'node:fs';
import { check, fail, finish, launchChromium, ok, step, watchedPage } from './check.mjs';

const { chromium } = await import(process.argv[2]);
const env = process.env;
const base = env.ATRIUM_WEB_BASE;
const shots = env.ATRIUM_WEB_SHOTS;

const imageFiles = () => readdirSync(env.ATRIUM_UPLOAD_IMAGES).sort();

const browser = await launchChromium(chromium);

await step('upload', async () => {
    // the refusals this test provokes are logged by chromium as failed loads
    const page = await watchedPage(browser, { viewport: { width: 1280, height: 800 } },
        (t) => /status of (413|415)|ERR_CONNECTION|net::ERR/.test(t));
    const ctx = page.context();
    const problems = page.problems;
    const cdp = await ctx.newCDPSession(page);
    await cdp.send('Network.enable');
    const throttle = (bytesPerSecond) => cdp.send('Network.emulateNetworkConditions',
        { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: bytesPerSecond });

    await page.goto(`${base}/`);
    await page.getByLabel('User name').fill('alice');
    await page.getByLabel('Password').fill('correct horse');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    await page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Images', exact: true }).click();
    await page.getByRole('heading', { name: 'Images', exact: true }).waitFor();
    await page.locator('td.empty').waitFor({ timeout: 10000 });
    // a marker that a page load would wipe: the version must appear without one
    await page.evaluate(() => { window.atriumNoReload = true; });

    await page.getByRole('button', { name: 'Upload image' }).click();
    const dlg = page.getByRole('dialog', { name: 'Upload a golden image' });
    await dlg.waitFor();
    const alert = dlg.locator('.msg[role=alert], .msg[role=status]');
    const fileInput = dlg.locator('input[type=file]');
    const nameInput = dlg.getByLabel('Image name');

    // A vmdk: refused after the upload, in words.
    await fileInput.setInputFiles(env.ATRIUM_UPLOAD_VMDK);
    check(await nameInput.inputValue() === 'other', 'the image name is taken from the file name',
        await nameInput.inputValue());
    await dlg.getByRole('button', { name: 'Upload', exact: true }).click();
    await dlg.locator('.msg-error').waitFor({ timeout: 20000 });
    const vmdk = await alert.textContent();
    check(/vmdk; only qcow2 and raw can be imported/.test(vmdk), 'a vmdk is refused in words', vmdk);

    // Over max_image_mb: refused before the body is read.
    await nameInput.fill('');
    await fileInput.setInputFiles(env.ATRIUM_UPLOAD_HUGE);
    await dlg.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.waitForFunction(() => /at most|cut off/.test(
        document.querySelector('dialog .msg-error')?.textContent || '') &&
        !document.querySelector('dialog .msg-error')?.textContent.includes('vmdk'), null, { timeout: 20000 });
    const huge = await alert.textContent();
    check(/this broker accepts at most 48 MiB/.test(huge), 'a file over max_image_mb is refused with the limit in words', huge);

    // Cancelled half-way: nothing is kept.
    await throttle(4 * 1024 * 1024);
    await nameInput.fill('cancelled');
    await fileInput.setInputFiles(env.ATRIUM_UPLOAD_SLOW);
    await dlg.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.waitForFunction(() => {
        const v = document.querySelector('dialog progress')?.value || 0;
        return v >= 10 && v < 90;
    }, null, { timeout: 30000 });
    const during = imageFiles();
    await dlg.getByRole('button', { name: 'Cancel upload' }).click();
    await dlg.locator('.msg-info', { hasText: 'Upload cancelled' }).waitFor({ timeout: 10000 });
    ok('cancel stops the upload and says so');
    check(during.length === 0, 'mid-upload no file has a name in the image area', during.join(' '));
    // the broker notices the cut connection; its request log line shows it
    const listed = await page.evaluate(async () =>
        (await (await fetch('/api/v1/images', { credentials: 'same-origin' })).json()).items.map((i) => i.name));
    check(!listed.includes('cancelled'), 'the cancelled upload made no image', listed.join(' '));
    check(imageFiles().length === 0, 'the cancelled upload left no file', imageFiles().join(' '));

    // A qcow2 at 8 MiB/s: the bar moves through the upload to 100 %.
    await throttle(8 * 1024 * 1024);
    await nameInput.fill('');
    await fileInput.setInputFiles(env.ATRIUM_UPLOAD_QCOW2);
    check(await nameInput.inputValue() === 'office-desktop', 'the name follows the new file');
    await dlg.getByLabel('Notes (optional)').fill('from the browser');
    await page.evaluate(() => {
        const bar = document.querySelector('dialog progress');
        window.atriumBar = [];
        new MutationObserver(() => window.atriumBar.push(bar.value))
            .observe(bar, { attributes: true, attributeFilter: ['value'] });
    });
    const t0 = Date.now();
    await dlg.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.waitForFunction(() => (document.querySelector('dialog progress')?.value || 0) >= 40,
        null, { timeout: 30000 });
    await dlg.screenshot({ path: `${shots}/image-upload.png` });
    await dlg.locator('.msg-ok', { hasText: 'office-desktop version 1 is ready' }).waitFor({ timeout: 60000 });
    const secs = (Date.now() - t0) / 1000;
    const seen = await page.evaluate(() => window.atriumBar);
    const mid = seen.filter((v) => v > 0 && v < 100);
    check(mid.length >= 2, 'the progress bar showed the upload under way', JSON.stringify(seen));
    check(seen.every((v, i) => i === 0 || v >= seen[i - 1] || v === 0), 'the progress bar never went back', JSON.stringify(seen));
    check(await dlg.locator('progress').evaluate((b) => b.value) === 100 &&
        /^100 %/.test(await dlg.locator('.upload-text').textContent()), 'the progress bar ends at 100 %');
    console.log(`     32 MiB throttled to 8 MiB/s: ${secs.toFixed(1)} s, ${seen.length} bar updates`);
    await dlg.screenshot({ path: `${shots}/image-uploaded.png` });
    await throttle(-1);
    await dlg.getByRole('button', { name: 'Close' }).click();

    const row = page.locator('table.list tr', { hasText: 'office-desktop' });
    await row.waitFor({ timeout: 10000 });
    const text = await row.textContent();
    check(/v1/.test(text) && /ready/.test(text), 'the new version is listed, ready', text);
    check(await page.evaluate(() => window.atriumNoReload === true), 'without a page reload');
    await page.screenshot({ path: `${shots}/admin-images-uploaded.png`, fullPage: true });
    check(problems.length === 0, 'no console errors or CSP violations', problems.join(' | '));
    await ctx.close();
});

await browser.close();
finish();
