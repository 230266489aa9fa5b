// What every browser check script of the web tests shares: the tally of
// checks ("ok   NAME" / "FAIL NAME: WHY" lines, which the test scripts and
// ctest's output show), a step that turns an exception into a failed check,
// and the final line and exit status (failure also when nothing was checked).

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
