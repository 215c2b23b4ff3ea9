// `make run`'s hub in a real browser (Debian Chromium, playwright-core from labextension/node_modules):
// log in with the printed password, see the GPU size disabled with its reason, start a server,
// land in JupyterLab, open TensorBoard from the launcher. Driven by tests/e2e/test_run_hub.py.
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(join(process.env.PLAYWRIGHT_FROM, 'package.json'));
const { chromium } = require('playwright-core');

const HUB = process.env.HUB_URL;
const USER = process.env.HUB_USER;
const PASSWORD = process.env.HUB_PASSWORD;
const OUT = process.env.OUT_DIR;
mkdirSync(OUT, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-dev-shm-usage']
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
page.setDefaultTimeout(60_000);
let step = 'login';
try {
  await page.goto(`${HUB}/hub/login`);
  await page.fill('#username_input', USER);
  await page.fill('#password_input', PASSWORD);
  await Promise.all([page.waitForURL(/\/hub\/spawn/), page.click('#login_submit')]);
  await page.screenshot({ path: join(OUT, '01-spawn-form.png') });

  step = 'form';
  const gpu = page.locator('#mlp-hardware option[value="gpu-1"]');
  console.log(JSON.stringify({ gpu_disabled: await gpu.isDisabled(), gpu_label: (await gpu.textContent()).trim() }));
  await page.selectOption('#mlp-hardware', 'cpu-small');
  await page.selectOption('#mlp-environment', 'python');

  step = 'spawn';
  await Promise.all([page.waitForURL(new RegExp(`/user/${USER}/lab`), { timeout: 180_000 }),
    page.click('form input[type="submit"], form button[type="submit"]')]);
  const card = page.locator('.jp-LauncherCard', { hasText: 'TensorBoard' });
  await card.first().waitFor({ timeout: 120_000 });
  await page.screenshot({ path: join(OUT, '02-lab-launcher.png') });

  step = 'tensorboard';
  await card.first().click();
  await page.waitForFunction(() => {
    const f = document.querySelector('iframe[src*="/tensorboard/"]');
    // the rendered app (its toolbar), not only the page title
    return f && f.contentDocument && f.contentDocument.body && /TensorBoard/.test(f.contentDocument.body.innerText);
  }, null, { timeout: 180_000 });
  await page.screenshot({ path: join(OUT, '03-tensorboard.png') });
  console.log(JSON.stringify({ tensorboard: true }));
  console.log('hub browser flow passed');
} catch (err) {
  await page.screenshot({ path: join(OUT, `failed-${step}.png`) }).catch(() => {});
  console.error(`failed at ${step}: ${err.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
