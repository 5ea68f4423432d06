#!/usr/bin/env node
// Accessibility checks in a real browser: Debian's Chromium, headless,
// driven by playwright-core, with axe-core injected into each page.
//
//   node t/browser/a11y.mjs BASE_URL [--only TEXT] [--screenshots DIR]
//                                    [--tags wcag2a,wcag2aa,...]
//                                    [--pages FILE.mjs]
//
// For every page of pages.mjs at every width it checks:
//   - the page answers with the expected HTTP status, and loads without
//     console errors, script errors or failed subresources;
//   - axe finds no violation of the WCAG 2.0/2.1 A and AA rules;
//   - the page does not scroll sideways (WCAG 1.4.10 reflow at 320 px);
//   - the first Tab reaches the skip link, which is visible when focused,
//     and activating it moves the focus to <main>.
//
// Output: one JSON object a line on stdout, read by t/080-browser.t:
//   {"type":"test","ok":true,"name":"...","diag":"..."}
//   {"type":"note","text":"..."}
//   {"type":"done","tests":N,"failed":N}
// The exit status is 0 when the run reached its end (whatever the checks
// found), 2 on bad arguments, 1 when the browser could not run.
//
// Environment: SHINSEI_CHROMIUM (default /usr/bin/chromium),
// A11Y_TIMEOUT_MS (the whole run, default 240000).

import { createRequire } from 'node:module';
import { readFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

const major = Number(process.versions.node.split('.')[0]);
if (major < 20) {
    process.stderr.write(`a11y.mjs: Node ${process.versions.node} is too old; `
        + 'playwright-core needs Node 20 or later\n');
    process.exit(1);
}

const DEFAULT_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'];
const ALL_CHECKS = ['axe', 'reflow', 'skiplink'];
const CHROMIUM = process.env.SHINSEI_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
    '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
];
const HEIGHT = { 320: 640 };       // a phone; other widths get 800


// --- arguments ---------------------------------------------------------

function usage(msg) {
    if (msg) process.stderr.write(`a11y.mjs: ${msg}\n`);
    process.stderr.write('usage: node a11y.mjs BASE_URL [--only TEXT] '
        + '[--screenshots DIR] [--tags T1,T2] [--pages FILE.mjs]\n');
    process.exit(2);
}

const opt = { tags: DEFAULT_TAGS, pages: join(HERE, 'pages.mjs') };
{
    const argv = process.argv.slice(2);
    while (argv.length) {
        const a = argv.shift();
        if (a === '--only') opt.only = argv.shift() ?? usage('--only TEXT');
        else if (a === '--screenshots') opt.screenshots = argv.shift() ?? usage('--screenshots DIR');
        else if (a === '--tags') opt.tags = (argv.shift() ?? usage('--tags LIST')).split(',');
        else if (a === '--pages') opt.pages = resolve(argv.shift() ?? usage('--pages FILE'));
        else if (a.startsWith('-')) usage(`unknown option ${a}`);
        else if (!opt.base) opt.base = a.replace(/\/+$/, '');
        else usage(`unexpected argument ${a}`);
    }
    if (!opt.base || !/^https?:\/\//.test(opt.base)) usage('BASE_URL (http://host:port) is required');
}


// --- output --------------------------------------------------------------

let tests = 0, failed = 0;

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

function test(ok, name, diag) {
    tests++;
    if (!ok) failed++;
    const line = { type: 'test', ok: !!ok, name };
    if (!ok && diag) line.diag = diag;
    emit(line);
}

function note(text) {
    emit({ type: 'note', text });
}


// --- the pieces that run inside the page ---------------------------------

const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

// a short, readable name for an element (for diagnostics)
const DESCRIBE = `(el) => {
    if (!el || el.nodeType !== 1) return String(el && el.nodeName);
    let s = el.localName;
    if (el.id) s += '#' + el.id;
    if (el.classList.length) s += '.' + [...el.classList].join('.');
    const href = el.getAttribute('href');
    if (href) s += '[href="' + href + '"]';
    const text = (el.textContent || '').trim().replace(/\\s+/g, ' ');
    if (text) s += ' "' + (text.length > 30 ? text.slice(0, 30) + '…' : text) + '"';
    return s;
}`;

async function runAxe(page, tags, axeOpt = {}) {
    if (!await page.evaluate('typeof window.axe === "object"')) {
        // evaluated through the DevTools protocol, which the page's
        // Content-Security-Policy (script-src 'self') does not govern, so
        // the page is checked under its real CSP
        await page.evaluate(axeSource);
    }
    return page.evaluate(async ({ tags, disableRules, exclude }) => {
        const rules = {};
        for (const id of disableRules) rules[id] = { enabled: false };
        const context = exclude.length
            ? { exclude: exclude.map((s) => [s]) } : document;
        const r = await window.axe.run(context, {
            runOnly: { type: 'tag', values: tags },
            rules,
            resultTypes: ['violations', 'incomplete'],
        });
        const slim = (list) => list.map((v) => ({
            id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
            tags: v.tags.filter((t) => /^wcag\d/.test(t)),
            nodes: v.nodes.map((n) => ({
                target: n.target.map(String).join(' '),
                html: n.html,
                summary: n.failureSummary,
            })),
        }));
        return { version: window.axe.version, violations: slim(r.violations),
                 incomplete: slim(r.incomplete) };
    }, { tags, disableRules: axeOpt.disableRules || [],
         exclude: axeOpt.exclude || [] });
}

function formatRules(list, what) {
    const out = [];
    for (const v of list) {
        out.push(`${what} ${v.id} (${v.impact || 'no impact'}; ${v.tags.join(', ')}): ${v.help}`);
        out.push(`  ${v.helpUrl}`);
        for (const n of v.nodes.slice(0, 8)) {
            out.push(`  - ${n.target}`);
            out.push(`    ${n.html.length > 300 ? n.html.slice(0, 300) + '…' : n.html}`);
            if (n.summary) {
                out.push(...n.summary.split('\n').map((l) => `    ${l}`));
            }
        }
        if (v.nodes.length > 8) out.push(`  (and ${v.nodes.length - 8} more elements)`);
    }
    return out.join('\n');
}

async function reflow(page) {
    return page.evaluate(`(() => {
        const describe = ${DESCRIBE};
        const doc = document.documentElement;
        const r = { scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth,
                    wide: [] };
        if (r.scrollWidth > r.clientWidth) {
            // the outermost elements that reach past the right edge
            for (const el of document.body.querySelectorAll('*')) {
                const b = el.getBoundingClientRect();
                if (b.right > r.clientWidth + 0.5 && b.width > 0
                    && !(el.parentElement
                         && el.parentElement.getBoundingClientRect().right
                            > r.clientWidth + 0.5)) {
                    r.wide.push(describe(el) + ': right edge at '
                                + Math.round(b.right) + ' px');
                    if (r.wide.length >= 10) break;
                }
            }
        }
        return r;
    })()`);
}

async function skipLink(page) {
    // Start the keyboard walk at the top of the document, as a fresh page
    // does, even after steps that moved the focus: a focus-only marker
    // before everything else in <body>, focused, then Tab.
    await page.evaluate(() => {
        const m = document.createElement('span');
        m.tabIndex = -1;
        m.id = '__a11y_start';
        document.body.prepend(m);
        m.focus();
    });
    await page.keyboard.press('Tab');
    const first = await page.evaluate(`(() => {
        const describe = ${DESCRIBE};
        document.getElementById('__a11y_start')?.remove();
        const el = document.activeElement;
        const main = document.querySelector('main, [role="main"]');
        const href = el && el.getAttribute && el.getAttribute('href') || '';
        const target = href.startsWith('#')
            ? document.getElementById(decodeURIComponent(href.slice(1))) : null;
        const b = el ? el.getBoundingClientRect() : null;
        return {
            focused: describe(el),
            hasMain: !!main,
            mainId: main && main.id,
            isLink: !!el && el.localName === 'a' && !!target,
            toMain: !!target && target === main,
            box: b && { left: b.left, top: b.top, width: b.width, height: b.height },
            viewport: { width: innerWidth, height: innerHeight },
        };
    })()`);

    const problems = [];
    if (!first.hasMain) problems.push('the page has no <main> landmark');
    if (!first.isLink || !first.toMain) {
        problems.push(`the first Tab focused ${first.focused}, not a link to `
            + `#${first.mainId || 'main'}`);
    } else {
        const b = first.box, v = first.viewport;
        if (!(b.width >= 8 && b.height >= 8 && b.left >= 0 && b.top >= 0
              && b.left + b.width <= v.width + 0.5 && b.top + b.height <= v.height + 0.5)) {
            problems.push(`the focused skip link is not fully visible: box `
                + JSON.stringify(b) + ` in a ${v.width}x${v.height} viewport`);
        }
    }
    const result = { first, firstOk: problems.length === 0, firstProblems: problems };
    if (!first.isLink) return result;

    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.activeElement !== document.body
        && !document.activeElement.classList.contains('skip-link'),
        null, { timeout: 2000 }).catch(() => {});
    const after = await page.evaluate(`(() => {
        const describe = ${DESCRIBE};
        const main = document.querySelector('main, [role="main"]');
        return { focused: describe(document.activeElement),
                 onMain: !!main && document.activeElement === main,
                 hash: location.hash,
                 mainHasFocusable: !!main && !!main.querySelector(
                     'a[href], button, input, select, textarea, [tabindex]:not([tabindex="-1"])') };
    })()`);
    result.after = after;
    result.afterProblems = [];
    if (!after.onMain) {
        result.afterProblems.push(`after Enter on the skip link the focus is on ${after.focused}`);
    } else if (after.mainHasFocusable) {
        // the next Tab must continue inside main, not back at the header
        await page.keyboard.press('Tab');
        const next = await page.evaluate(`(() => {
            const describe = ${DESCRIBE};
            const main = document.querySelector('main, [role="main"]');
            return { focused: describe(document.activeElement),
                     inMain: !!main && main.contains(document.activeElement) };
        })()`);
        if (!next.inMain) {
            result.afterProblems.push(`the Tab after the skip link went to ${next.focused}, outside main`);
        }
    }
    result.afterOk = result.afterProblems.length === 0;
    return result;
}


// --- one page at one width ---------------------------------------------

async function runSteps(page, entry) {
    for (const step of entry.actions || []) {
        if ('fill' in step) await page.fill(step.fill, String(step.value ?? ''));
        else if ('check' in step) await page.check(step.check);
        else if ('uncheck' in step) await page.uncheck(step.uncheck);
        else if ('select' in step) await page.selectOption(step.select, step.value);
        else if ('press' in step) await page.press(step.press, step.key);
        else if ('click' in step) await page.click(step.click);
        else if ('goto' in step) await page.goto(opt.base + step.goto);
        else if ('waitFor' in step) await page.waitForSelector(step.waitFor);
        else throw new Error(`unknown step ${JSON.stringify(step)}`);
        await page.waitForLoadState('load');
    }
    if (entry.setup) {
        await entry.setup(page, { baseURL: opt.base });
        await page.waitForLoadState('load');
    }
}

function slug(s) {
    return s.replace(/^\/+/, '').replace(/[^A-Za-z0-9_-]+/g, '_') || 'index';
}

async function checkPage(browser, entry, width) {
    const label = entry.name ? `${entry.path} (${entry.name})` : entry.path;
    const at = `${label} at ${width} px`;
    const status = entry.status ?? 200;
    const checks = entry.checks || ALL_CHECKS;
    const names = {
        load: `${at} answers ${status} and loads without errors`,
        axe: `no axe violations on ${at}`,
        reflow: `no horizontal scrolling on ${at}`,
        skipFirst: `the skip link is the first focusable element on ${at} and shows when focused`,
        skipMain: `the skip link moves focus to main on ${at}`,
        focus: `the focus is on ${entry.focus} on ${at}`,
    };
    const wanted = ['load'];
    if (entry.focus) wanted.push('focus');
    if (checks.includes('axe')) wanted.push('axe');
    if (checks.includes('reflow')) wanted.push('reflow');
    if (checks.includes('skiplink')) wanted.push('skipFirst', 'skipMain');

    const context = await browser.newContext({
        viewport: { width, height: HEIGHT[width] || 800 },
        deviceScaleFactor: 1,
        locale: 'ja-JP',
        timezoneId: 'Asia/Tokyo',
    });
    const done = new Set();
    const report = (key, ok, diag) => { done.add(key); test(ok, names[key], diag); };
    try {
        const page = await context.newPage();
        page.setDefaultTimeout(15000);

        const problems = [];
        let last = null;                 // the last main-frame document
        page.on('response', (r) => {
            const req = r.request();
            if (req.isNavigationRequest() && r.frame() === page.mainFrame()) {
                last = r;
            } else if (r.status() >= 400) {
                problems.push(`${req.method()} ${r.url()} answered ${r.status()}`);
            } else if (r.status() >= 200 && r.status() < 300) {
                // (a 304 of a revalidated copy has no Content-Type: the
                // cached one, checked when it came, applies)
                // Chromium ignores a stylesheet or script served under
                // another type (strict MIME checking), without a word
                const type = (r.headers()['content-type'] || '(none)').split(';')[0].trim();
                const want = { stylesheet: /^text\/css$/i,
                               script: /^(text|application)\/(javascript|ecmascript)$/i }[req.resourceType()];
                if (want && !want.test(type)) {
                    problems.push(`${r.url()} is served as ${type}, so the browser ignores `
                        + `this ${req.resourceType()} (nginx needs "include /etc/nginx/mime.types;")`);
                }
            }
        });
        // Chromium fetches the tab's icon (<link rel="icon">) itself, late,
        // and cancels the fetch when the page goes on to the next one (a
        // step's click or goto) or the icon is no longer wanted: no fault
        // of the page.  An icon that is not there still answers 404 above.
        page.on('requestfailed', (req) => {
            const error = req.failure()?.errorText;
            if (error === 'net::ERR_ABORTED' && req.resourceType() === 'other') {
                return;
            }
            problems.push(`${req.method()} ${req.url()} failed: ${error}`);
        });
        page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
        page.on('console', (m) => {
            if (m.type() !== 'error') return;
            // the responses and failures above already name these, with
            // their URL (and the main document's own status is expected)
            if (/^Failed to load resource/.test(m.text())) return;
            problems.push(`console error: ${m.text()}`);
        });

        await page.goto(opt.base + entry.path, { waitUntil: 'load' });
        await runSteps(page, entry);
        await page.evaluate(() => document.fonts.ready);

        const unstyled = await page.evaluate(() => [...document.querySelectorAll(
            'link[rel~="stylesheet"]')].filter((l) => {
                try { return !l.sheet || l.sheet.cssRules.length === 0; }
                catch (e) { return false; }   // another origin's: unreadable
            }).map((l) => l.href));
        for (const href of unstyled) problems.push(`the stylesheet ${href} applied no rules`);

        const got = last ? last.status() : 'no response';
        const loadProblems = [...problems];
        if (got !== status) loadProblems.unshift(`${last ? last.url() : entry.path} answered ${got}, expected ${status}`);
        report('load', loadProblems.length === 0, loadProblems.join('\n'));

        if (opt.screenshots) {
            mkdirSync(opt.screenshots, { recursive: true });
            await page.screenshot({ fullPage: true,
                path: join(opt.screenshots, `${slug(label)}-${width}.png`) });
        }

        if (entry.focus) {
            const f = await page.evaluate(`(() => {
                const describe = ${DESCRIBE};
                const want = document.querySelector(${JSON.stringify(entry.focus)});
                return { ok: !!want && want === document.activeElement,
                         found: !!want, focused: describe(document.activeElement) };
            })()`);
            report('focus', f.ok, f.found ? `the focus is on ${f.focused}`
                                          : `no element matches ${entry.focus}`);
        }

        if (wanted.includes('axe')) {
            const r = await runAxe(page, opt.tags, entry.axe);
            report('axe', r.violations.length === 0,
                   `axe-core ${r.version}, tags ${opt.tags.join(',')}\n`
                   + formatRules(r.violations, 'violation'));
            if (r.incomplete.length) {
                note(`axe needs a person to review on ${at}:\n`
                     + formatRules(r.incomplete, 'review'));
            }
        }

        if (wanted.includes('reflow')) {
            const r = await reflow(page);
            report('reflow', r.scrollWidth <= r.clientWidth,
                   `scrollWidth ${r.scrollWidth} > clientWidth ${r.clientWidth}; `
                   + `too wide:\n  ${r.wide.join('\n  ')}`);
        }

        if (wanted.includes('skipFirst')) {
            const r = await skipLink(page);
            report('skipFirst', r.firstOk, r.firstProblems.join('\n'));
            if (r.after) {
                report('skipMain', r.afterOk, r.afterProblems.join('\n'));
            } else {
                report('skipMain', false, 'there is no skip link to follow');
            }
        }
    } catch (e) {
        const why = `${at}: ${e.stack || e}`;
        for (const key of wanted) {
            if (!done.has(key)) report(key, false, why);
        }
    } finally {
        await context.close().catch(() => {});
    }
}


// --- main ----------------------------------------------------------------

const { pages, widths: defaultWidths = [1280, 320] } =
    await import(pathToFileURL(opt.pages).href);

const { chromium } = require('playwright-core');

const timer = setTimeout(() => {
    process.stderr.write(`a11y.mjs: gave up after ${process.env.A11Y_TIMEOUT_MS || 240000} ms\n`);
    process.exit(1);
}, Number(process.env.A11Y_TIMEOUT_MS) || 240000);

let browser;
try {
    browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        // launch() gives Chromium a fresh, temporary --user-data-dir of its
        // own and removes it on close (it refuses one in args)
        args: CHROMIUM_ARGS,
        env: { ...process.env, TZ: 'Asia/Tokyo' },
        timeout: 60000,
    });
} catch (e) {
    process.stderr.write(`a11y.mjs: cannot start ${CHROMIUM}: ${e.message}\n`);
    process.exit(1);
}
note(`Chromium ${browser.version()}, axe-core ${require('axe-core/package.json').version}, `
     + `tags ${opt.tags.join(',')}`);

try {
    for (const entry of pages) {
        const label = entry.name ? `${entry.path} (${entry.name})` : entry.path;
        if (opt.only && !label.includes(opt.only)) continue;
        for (const width of entry.widths || defaultWidths) {
            await checkPage(browser, entry, width);
        }
    }
} finally {
    await browser.close().catch(() => {});
    clearTimeout(timer);
}
emit({ type: 'done', tests, failed });
