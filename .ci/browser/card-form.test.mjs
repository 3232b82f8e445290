// The hosted card form in a real browser: Debian's Chromium, driven by playwright-core, loads a merchant
// page on another origin that imports the official Commerce Web SDK (@starfish-codes/hellgate 3.11) from
// node_modules. The merchant's own small server makes sessions with its API key; Strongroom serves HTTPS
// with a self-signed certificate made here. Run by `.ci/browser-test` (which installs what it needs).
//
// Env: STRONGROOM_BIN (default target/debug/strongroom), BROWSER_DEPS_DIR (where npm installed the
// packages), CARD_FORM_SCREENSHOT (a path: save a picture of the filled form there).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

// Strongroom's certificate is self-signed: this process's own calls to it skip verification too.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const DEPS = resolve(process.env.BROWSER_DEPS_DIR || join(ROOT, 'target/ci-browser'));
const require = createRequire(join(DEPS, 'package.json'));
const { chromium } = require('playwright-core');
const SDK = join(DEPS, 'node_modules/@starfish-codes/hellgate/dist/hellgate-sdk.mjs');
const BIN = resolve(ROOT, process.env.STRONGROOM_BIN || 'target/debug/strongroom');
const SESSION_TTL = 20;

const FULL = '4242424242424242';
const CVC_CARD = '4000000000000101';

let work, server, merchant, browser, vault, shop, apiKey, staleSession, staleMadeAt;

function freePort() {
  return new Promise((ok, fail) => {
    const s = createNetServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); });
    s.on('error', fail);
  });
}

function cli(args) {
  return execFileSync(BIN, args, { env: strongroomEnv(), encoding: 'utf8' });
}

let env;
function strongroomEnv() { return env; }

async function api(method, path, body) {
  const r = await fetch(vault + path, {
    method,
    headers: { 'x-api-key': apiKey, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function pay(tokenId) {
  return api('POST', '/payments/one-off', {
    amount: 1250, currency_code: 'EUR', reference: 'Order #1', capture: 'automatic',
    source: { type: 'token', token_id: tokenId },
  });
}

// The merchant's page: the SDK from node_modules, its own server endpoint for sessions, a log of every
// message the page receives (to prove none carried the card), and the form state shown in the DOM.
const PAGE = (vaultHost, vaultUrl) => `<!doctype html>
<html><head><meta charset="utf-8"><title>Shop checkout</title>
<style>
 body { font: 15px system-ui, sans-serif; margin: 24px; width: 420px; color: #222; }
 .field { border: 1px solid #c9ced6; border-radius: 6px; padding: 4px 8px; margin: 6px 0 12px; height: 29px; }
 .field iframe { border: 0; display: block; }
 .row { display: flex; gap: 12px; } .row > div { flex: 1; }
 label { font-size: 13px; color: #555; }
 button { background: #2357d9; color: white; border: 0; border-radius: 6px; padding: 10px 16px; font-size: 15px; }
</style></head>
<body>
<h3>Pay Shop Example</h3>
<label>Card number</label><div id="card-number" class="field"></div>
<div class="row">
  <div><label>Expiry</label><div id="expiry" class="field"></div></div>
  <div><label>Security code</label><div id="cvc" class="field"></div></div>
</div>
<button id="pay">Pay €12.50</button>
<pre id="state"></pre><pre id="result"></pre>
<script>
  window.HG_IFRAME_HOST = ${JSON.stringify(vaultHost)};
  window.__messages = [];
  window.addEventListener('message', (e) => window.__messages.push({ origin: e.origin, data: JSON.stringify(e.data) }));
</script>
<script type="module">
  import { Hellgate } from '/sdk/hellgate-sdk.mjs';
  let card;
  window.startForm = async (sessionId) => {
    const client = await Hellgate.init(sessionId, { base_url: ${JSON.stringify(vaultUrl)} });
    card = client.use('CARD');
    const fields = card.createFormFields({ style: { base: { color: '#1f2328', fontSize: '15px' }, invalid: { color: '#cf222e' } } });
    await Promise.all([
      fields.cardNumber.mount('#card-number'),
      fields.expiryDate.mount('#expiry'),
      fields.securityCode.mount('#cvc'),
    ]);
    card.onStateChange((s) => { document.getElementById('state').textContent = JSON.stringify(s); });
    return client.session.state.next_action;
  };
  window.startOneFrame = async () => {
    const r = await fetch('/api/session', { method: 'POST' });
    const client = await Hellgate.init((await r.json()).session_id, { base_url: ${JSON.stringify(vaultUrl)} });
    card = client.use('CARD');
    await card.createForm().mount('#card-number');
    card.onStateChange((s) => { document.getElementById('state').textContent = JSON.stringify(s); });
  };
  window.startWithNewSession = async () => {
    const r = await fetch('/api/session', { method: 'POST' });
    return window.startForm((await r.json()).session_id);
  };
  window.startRefresh = async (tokenId) => {
    const r = await fetch('/api/refresh-session', { method: 'POST', body: tokenId });
    return window.startForm((await r.json()).session_id);
  };
  window.tokenizeNow = async () => {
    const out = await card.tokenize({ cardholder_name: 'Jane Holder' });
    document.getElementById('result').textContent = JSON.stringify(out);
    return out;
  };
  window.processNow = async () => {
    const out = await card.process();
    document.getElementById('result').textContent = JSON.stringify(out);
    return out;
  };
</script></body></html>`;

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'strongroom-browser-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(work, 'key.pem'), '-out', join(work, 'cert.pem'), '-days', '2', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  const [vaultPort, shopPort] = [await freePort(), await freePort()];
  vault = `https://127.0.0.1:${vaultPort}`;
  shop = `http://localhost:${shopPort}`;
  env = {
    ...process.env,
    STRONGROOM_DATA_DIR: join(work, 'data'),
    STRONGROOM_LISTEN: `127.0.0.1:${vaultPort}`,
    STRONGROOM_TLS_CERT_FILE: join(work, 'cert.pem'),
    STRONGROOM_TLS_KEY_FILE: join(work, 'key.pem'),
    STRONGROOM_SESSION_TTL_SECONDS: String(SESSION_TTL),
    STRONGROOM_AUTH_CACHE_SECONDS: '0',
  };
  delete env.STRONGROOM_DATABASE_URL;
  delete env.STRONGROOM_REDIS_URL;
  const account = JSON.parse(cli(['account', 'create', '--name', 'shop', '--json']));
  apiKey = account.api_key;
  cli(['origin', 'add', '--account', account.id, '--origin', shop, '--json']);

  server = spawn(BIN, ['serve'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  server.stderr.on('data', (d) => { log += d; });
  for (let i = 0; ; i++) {
    try { if ((await fetch(vault + '/health')).ok) break; } catch { /* not yet */ }
    if (i > 100) throw new Error('strongroom did not start: ' + log);
    await new Promise((r) => setTimeout(r, 100));
  }

  const sdk = readFileSync(SDK);
  const page = PAGE(`127.0.0.1:${vaultPort}`, vault);
  merchant = createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    if (req.url === '/') { res.writeHead(200, { 'content-type': 'text/html' }); return res.end(page); }
    if (req.url === '/sdk/hellgate-sdk.mjs') { res.writeHead(200, { 'content-type': 'text/javascript' }); return res.end(sdk); }
    // The merchant's server side: sessions are made with the API key, which the page never sees.
    const made = req.url === '/api/session' ? await api('POST', '/tokens/session', {})
      : req.url === '/api/refresh-session' ? await api('POST', `/tokens/${body}/refresh-session`)
        : null;
    if (!made) { res.writeHead(404); return res.end(); }
    res.writeHead(made.status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(made.body));
  });
  await new Promise((r) => merchant.listen(shopPort, '127.0.0.1', r));

  // Made now, used last: by then it has expired.
  staleSession = (await api('POST', '/tokens/session', {})).body.session_id;
  staleMadeAt = Date.now();

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--ignore-certificate-errors', '--no-sandbox', '--disable-gpu', '--host-resolver-rules=MAP localhost 127.0.0.1'],
  });
});

after(async () => {
  await browser?.close();
  merchant?.close();
  server?.kill('SIGTERM');
  if (work) rmSync(work, { recursive: true, force: true });
});

async function openShop() {
  const context = await browser.newContext({ viewport: { width: 480, height: 330 } });
  const page = await context.newPage();
  await page.goto(shop + '/');
  await page.waitForFunction(() => typeof window.startWithNewSession === 'function');
  return page;
}

async function type(page, selector, text) {
  await page.frameLocator(`${selector} iframe`).locator('input').first().pressSequentially(text, { delay: 5 });
}

async function formState(page) {
  return JSON.parse((await page.textContent('#state')) || '{}');
}

// Everything the merchant page could have kept: its DOM, its storage, and every message it received.
async function pageHoldings(page) {
  return page.evaluate(() => JSON.stringify({
    html: document.documentElement.outerHTML,
    local: { ...localStorage },
    session: { ...sessionStorage },
    cookies: document.cookie,
    messages: window.__messages,
    frames: [...document.querySelectorAll('iframe')].map((f) => { try { return f.contentDocument ? 'readable' : null; } catch { return null; } }),
  }));
}

function assertNoCard(holdings, pan) {
  const spaced = pan.replace(/(\d{4})(?=\d)/g, '$1 ');
  assert.ok(!holdings.includes(pan), 'the merchant page held the full card number');
  assert.ok(!holdings.includes(spaced), 'the merchant page held the full card number, spaced');
  assert.ok(!holdings.includes('"readable"'), 'the merchant page could read a card frame');
}

function approved(payment) {
  return ['authorized', 'capturing', 'captured'].includes(payment.status);
}

async function tokenCount() {
  return (await api('GET', '/tokens?limit=100')).body.data.length;
}

test('a card typed into the hosted form becomes a token, and the page never holds the number', async () => {
  const page = await openShop();
  assert.equal(await page.evaluate(() => window.startWithNewSession()), 'tokenize_card');
  await type(page, '#card-number', FULL);
  await type(page, '#expiry', '0431');
  await type(page, '#cvc', '123');
  await page.waitForFunction(() => JSON.parse(document.getElementById('state').textContent || '{}').valid === true);
  if (process.env.CARD_FORM_SCREENSHOT) await page.screenshot({ path: process.env.CARD_FORM_SCREENSHOT });
  const result = await page.evaluate(() => window.tokenizeNow());
  assert.match(result.token_id, /^[0-9a-f-]{36}$/);
  const token = await api('GET', `/tokens/${result.token_id}`);
  assert.equal(token.status, 200);
  assert.equal(token.body.masked_account_number, '424242XXXXXX4242');
  assert.equal(token.body.cardholder_name, 'Jane Holder');
  assert.equal(token.body.expiry_month, 4);
  assert.equal(token.body.expiry_year, 2031);
  const holdings = await pageHoldings(page);
  assert.ok(holdings.includes('card:tokenize:response'), 'the page saw the SDK messages');
  assertNoCard(holdings, FULL);
  await page.context().close();
});

test('the one-frame form (createForm) tokenizes too', async () => {
  const page = await openShop();
  await page.evaluate(() => window.startOneFrame());
  const frame = page.frameLocator('#card-number iframe');
  await frame.locator('input.number').pressSequentially('5555555555554444', { delay: 5 });
  await frame.locator('input.expiry').pressSequentially('0930', { delay: 5 });
  await frame.locator('input.cvc').pressSequentially('456', { delay: 5 });
  await page.waitForFunction(() => JSON.parse(document.getElementById('state').textContent || '{}').valid === true);
  const result = await page.evaluate(() => window.tokenizeNow());
  const token = await api('GET', `/tokens/${result.token_id}`);
  assert.equal(token.body.masked_account_number, '555555XXXXXX4444');
  assert.equal(token.body.expiry_month, 9);
  assertNoCard(await pageHoldings(page), '5555555555554444');
  await page.context().close();
});

test('an invalid number shows the error state and tokenizes nothing', async () => {
  const before = await tokenCount();
  const page = await openShop();
  await page.evaluate(() => window.startWithNewSession());
  await type(page, '#card-number', '4242424242424241');
  await type(page, '#expiry', '0431');
  await type(page, '#cvc', '123');
  await page.waitForFunction(() => JSON.parse(document.getElementById('state').textContent || '{}').errorCode === 'LUHN_CHECK_FAILED');
  const state = await formState(page);
  assert.equal(state.valid, false);
  assert.equal(state.complete, true);
  const outcome = await page.evaluate(() => window.tokenizeNow().then(() => 'made', (e) => 'refused: ' + e.message));
  assert.match(outcome, /^refused: Card data is not valid/);
  const invalid = await page.frameLocator('#card-number iframe').locator('input').getAttribute('class');
  assert.match(invalid, /invalid/);
  assert.equal(await tokenCount(), before);
  assertNoCard(await pageHoldings(page), '4242424242424241');
  await page.context().close();
});

test('a security-code refresh feeds a customer-initiated payment', async () => {
  // A card whose sandbox payments are declined without a security code.
  const page = await openShop();
  await page.evaluate(() => window.startWithNewSession());
  await type(page, '#card-number', CVC_CARD);
  await type(page, '#expiry', '1230');
  await type(page, '#cvc', '321');
  await page.waitForFunction(() => JSON.parse(document.getElementById('state').textContent || '{}').valid === true);
  const { token_id: tokenId } = await page.evaluate(() => window.tokenizeNow());
  await page.context().close();
  const first = await pay(tokenId);
  assert.ok(approved(first.body), 'the first payment takes the code given at tokenization: ' + JSON.stringify(first.body));
  const without = await pay(tokenId);
  assert.equal(without.body.status, 'failed', JSON.stringify(without.body));

  const refresh = await openShop();
  assert.equal(await refresh.evaluate((id) => window.startRefresh(id), tokenId), 'refresh_security_code');
  const shown = await refresh.frameLocator('#card-number iframe').locator('input').inputValue();
  assert.equal(shown.replace(/\s+/g, ' '), '40000000 **** 0101');
  await type(refresh, '#cvc', '654');
  await refresh.waitForFunction(() => JSON.parse(document.getElementById('state').textContent || '{}').valid === true);
  const done = await refresh.evaluate(() => window.processNow());
  assert.equal(done.status, 'success');
  assert.equal(done.data.token_id, tokenId);
  assertNoCard(await pageHoldings(refresh), CVC_CARD);
  await refresh.context().close();
  const paid = await pay(tokenId);
  assert.ok(approved(paid.body), JSON.stringify(paid.body));
});

test('an expired session fails cleanly', async () => {
  const wait = staleMadeAt + (SESSION_TTL + 1) * 1000 - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const before = await tokenCount();
  const page = await openShop();
  const outcome = await page.evaluate((id) => window.startForm(id).then(() => 'started', (e) => 'failed: ' + JSON.stringify(e)), staleSession);
  assert.equal(outcome, 'failed: {"classifier":"NOT_FOUND","code":404,"message":"The requested resource was not found"}');
  assert.equal(await page.locator('#card-number iframe').count(), 0);
  assert.equal(await tokenCount(), before);
  await page.context().close();
});
