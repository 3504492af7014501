// Drives headless Chromium through the DevTools protocol for tests/dashboard.rs (Node 20 with
// --experimental-websocket; no packages). Usage:
//   node --experimental-websocket drive.js DEVTOOLS_PORT ADMIN_URL TOKEN SCREENSHOT_DIR
// Opens /ui, checks it shows nothing before the token, logs in, takes a screenshot, sets a
// split rule's weights through the page (accepting its confirmation dialog), prints
// "READY" and waits for a line on stdin (the test changes the catalog meanwhile), then measures
// how long the page takes to show the change. Results are printed as one JSON line.
"use strict";
const fs = require("fs");
const path = require("path");
const readline = require("readline");

const [devtoolsPort, adminUrl, token, shots] = process.argv.slice(2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  let page;
  for (let attempt = 0; attempt < 100 && !page; attempt++) {
    try {
      const list = await (await fetch(`http://127.0.0.1:${devtoolsPort}/json/list`)).json();
      page = list.find((target) => target.type === "page");
    } catch (_) {}
    if (!page) await sleep(100);
  }
  if (!page) throw new Error("chromium shows no page target");
  const ws = new WebSocket(page.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  let next = 0;
  const pending = new Map();
  const dialogs = [];
  const send = (method, params = {}) => new Promise((resolve, reject) => {
    const id = ++next;
    pending.set(id, { resolve, reject });
    ws.send(JSON.stringify({ id, method, params }));
  });
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.id && pending.has(message.id)) {
      const { resolve, reject } = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) reject(new Error(JSON.stringify(message.error))); else resolve(message.result);
    } else if (message.method === "Page.javascriptDialogOpening") {
      dialogs.push(message.params.message);
      send("Page.handleJavaScriptDialog", { accept: true });
    }
  };
  const evaluate = async (expression) => {
    const result = await send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
    if (result.exceptionDetails) throw new Error(JSON.stringify(result.exceptionDetails));
    return result.result.value;
  };
  const waitFor = async (expression, ms) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      try { if (await evaluate(expression)) return; } catch (_) {}
      await sleep(25);
    }
    throw new Error(`timed out after ${ms} ms waiting for ${expression}`);
  };
  const screenshot = async (name) => {
    const { data } = await send("Page.captureScreenshot", { format: "png", captureBeyondViewport: true });
    const file = path.join(shots, name);
    fs.writeFileSync(file, Buffer.from(data, "base64"));
    return file;
  };

  await send("Page.enable");
  await send("Runtime.enable");
  await send("Emulation.setDeviceMetricsOverride", { width: 1200, height: 1500, deviceScaleFactor: 1, mobile: false });
  await send("Page.navigate", { url: `${adminUrl}/ui` });
  await waitFor("document.readyState === 'complete' && !!document.getElementById('token')", 10000);
  const emptyBeforeLogin = await evaluate("document.getElementById('panel').innerHTML === ''");
  const loginShot = await screenshot("dashboard-login.png");
  await evaluate(`document.getElementById('token').value = ${JSON.stringify(token)};
                  document.querySelector('#login button').click(); true`);
  await waitFor("!!document.getElementById('default-version')", 10000);
  const panelShot = await screenshot("dashboard.png");

  const rule = await evaluate(`(() => {
    const form = document.querySelector('form[data-action=weights]');
    form.querySelector('input').value = 'v2=30,v1=70';
    form.querySelector('button').click();
    return form.dataset.rule;
  })()`);
  await waitFor(`document.getElementById('assign-${rule}').textContent === 'v2=30,v1=70'`, 5000);

  process.stdout.write("READY\n");
  const lines = readline.createInterface({ input: process.stdin });
  await new Promise((resolve) => lines.once("line", resolve));
  const changed = Date.now();
  await waitFor(`document.getElementById('assign-${rule}').textContent === 'v2=40,v1=60'`, 5000);
  const showedAfterMs = Date.now() - changed;
  const shadowShot = await screenshot("dashboard-after.png");
  process.stdout.write(JSON.stringify({ rule, dialogs, emptyBeforeLogin, showedAfterMs,
                                        screenshots: [loginShot, panelShot, shadowShot] }) + "\n");
  ws.close();
  process.exit(0);
}

main().catch((error) => { process.stderr.write(String(error.stack || error) + "\n"); process.exit(1); });
