// What every browser check script of the web tests shares: the tally of
// checks ("ok   NAME" / "FAIL NAME: WHY" lines, which the test scripts and
// ctest's output show), a step that turns an exception into a failed check,
// the final line and exit status (failure also when nothing was checked),
// Debian's chromium launched the same way, and pages that collect their
// console errors and CSP violations.

let passes = 0, fails = 0;

export function ok(name) { passes++; console.log(`ok   ${name}`); }
export function fail(name, why) { fails++; console.log(`FAIL ${name}${why ? `: ${why}` : ''}`); }
export function check(cond, name, why) { cond ? ok(name) : fail(name, why); }
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Runs fn; an exception fails the check NAME with the first lines of its message.
export async function step(name, fn) {
    try {
        await fn();
    } catch (e) {
        fail(name, e && e.message ? e.message.split('\n').filter((l) => l.trim()).slice(0, 4).join(' / ') : String(e));
    }
}

export function finish() {
    console.log(`${passes} passed, ${fails} failed`);
    process.exit(fails === 0 && passes > 0 ? 0 : 1);
}

// Debian's chromium ($ATRIUM_CHROMIUM), headless, through playwright-core's @chromium.
export function launchChromium(chromium) {
    return chromium.launch({
        executablePath: process.env.ATRIUM_CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--no-first-run',
            '--disable-component-update', '--disable-sync'],
    });
}

// A page in a new context of @browser (@options: newContext's) whose page
// errors, console errors and CSP violations are collected in page.problems,
// but for console errors whose text @ignore(text) accepts (the HTTP errors
// a check provokes on purpose).
export async function watchedPage(browser, options, ignore = () => false) {
    const ctx = await browser.newContext(options);
    await ctx.addInitScript(() => {
        document.addEventListener('securitypolicyviolation', (e) => {
            console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
        });
    });
    const page = await ctx.newPage();
    page.problems = [];
    page.on('pageerror', (e) => page.problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
        if (m.type() === 'error' && !ignore(m.text()))
            page.problems.push(m.text());
    });
    return page;
}
