// The researcher's flow in a real JupyterLab, in Debian's Chromium driven by playwright-core.
// Save as model → containerize → train → bad value refused → deploy → try it.
// Run by tests/ui/test_lab_ui.py, which starts `jupyter lab` (process backend) and passes:
//   LAB_URL (…/lab base, no trailing slash), LAB_TOKEN, NOTEBOOK (path in Jupyter), OUT_DIR
//   (screenshots), CHROMIUM (executable, default /usr/bin/chromium).
// Exits non-zero with the failing step's message; a screenshot of the failure is kept.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const LAB = process.env.LAB_URL;
const TOKEN = process.env.LAB_TOKEN;
const NOTEBOOK = process.env.NOTEBOOK || 'iris.ipynb';
const OUT = process.env.OUT_DIR || 'test-output/ui';
const EXE = process.env.CHROMIUM || '/usr/bin/chromium';
if (!LAB || !TOKEN) {
  console.error('LAB_URL and LAB_TOKEN are required');
  process.exit(2);
}
mkdirSync(OUT, { recursive: true });

const browser = await chromium.launch({
  executablePath: EXE,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-dev-shm-usage']
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
page.setDefaultTimeout(30_000);
const consoleErrors = [];
page.on('console', msg => { if (msg.type() === 'error') consoleErrors.push(msg.text()); });

let shot = 0;
async function screenshot(name) {
  shot += 1;
  const file = join(OUT, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  console.log(`screenshot ${file}`);
}

let current = 'start';
function step(name) {
  current = name;
  console.log(`step: ${name}`);
}

function expectText(actual, pattern, what) {
  if (!pattern.test(actual)) {
    throw new Error(`${what}: expected ${pattern}, got ${JSON.stringify(actual)}`);
  }
}

const dialog = page.locator('.jp-Dialog');
const toolbarButton = command => page.locator(`.jp-NotebookPanel-toolbar [data-command="${command}"]`).first();

try {
  step('open the notebook');
  await page.goto(`${LAB}/tree/${NOTEBOOK}?token=${TOKEN}`);
  await page.locator('.jp-NotebookPanel .jp-Cell').first().waitFor({ timeout: 90_000 });
  await toolbarButton('mlplatform:save-model').waitFor();
  // A kernel starts with the notebook; wait until it is idle so no kernel dialog interrupts.
  await page.locator('.jp-NotebookPanel-toolbar .jp-Toolbar-kernelStatus, .jp-Notebook-ExecutionIndicator').first()
    .waitFor({ timeout: 60_000 }).catch(() => {});
  await screenshot('notebook');

  step('save as model: detected hyperparameters before saving');
  await toolbarButton('mlplatform:save-model').click();
  await dialog.locator('.mlp-hp-table').waitFor();
  const hpTable = await dialog.locator('.mlp-hp-table').innerText();
  for (const name of ['C', 'max_iter', 'penalty', 'fit_intercept']) {
    expectText(hpTable, new RegExp(`\\b${name}\\b`), 'hyperparameter table');
  }
  const nameInput = dialog.getByLabel('Model name');
  expectText(await nameInput.inputValue(), /^iris$/, 'model name prefilled from the notebook');
  await screenshot('save-dialog');
  await dialog.locator('.jp-mod-accept').click();
  await dialog.waitFor({ state: 'detached' });
  const modelItem = page.locator('#mlplatform-panel [data-model="iris"]');
  await modelItem.waitFor();
  expectText(await modelItem.innerText(), /versions 1/, 'model in the sidebar');
  await screenshot('saved-model');

  step('containerize: the build context, then a layer build pushed to the test registry');
  await toolbarButton('mlplatform:containerize').click();
  await dialog.locator('.mlp-dockerfile').waitFor();
  expectText(await dialog.locator('.mlp-dockerfile').innerText(), /^FROM /m, 'generated Dockerfile');
  expectText(await dialog.getByLabel('Builder').innerText(), /layer[\s\S]*engine/, 'builder choices');
  await screenshot('containerize-dialog');
  await dialog.locator('.jp-mod-accept').click();
  await dialog.waitFor({ state: 'detached' });
  const built = page.locator('.jp-Dialog .mlp-build-result');
  await built.waitFor({ timeout: 120_000 });
  expectText(await built.innerText(), /Built iris v1 with layer in [\d.]+ s/, 'build summary');
  expectText(await built.locator('.mlp-image').innerText(), /\/mlplatform\/models\/iris@sha256:[0-9a-f]{64}$/, 'image');
  expectText(await built.locator('.mlp-digest').innerText(), /^sha256:[0-9a-f]{64}$/, 'digest');
  console.log(`containerized: ${await built.locator('.mlp-image').innerText()}`);
  await screenshot('containerized');
  await dialog.locator('.jp-mod-accept').click();
  await dialog.waitFor({ state: 'detached' });

  step('train with C overridden to 0.5');
  await toolbarButton('mlplatform:train').click();
  await dialog.locator('input[data-hp="C"]').waitFor();
  expectText(await dialog.locator('input[data-hp="max_iter"]').getAttribute('type'), /^number$/, 'int input type');
  expectText(String(await dialog.locator('input[data-hp="fit_intercept"]').isChecked()), /^true$/, 'bool checkbox');
  expectText(await dialog.getByLabel('Environment').innerText(), /Python/, 'environment select');
  expectText(await dialog.getByLabel('Hardware').innerText(), /Small CPU/, 'hardware select');
  await dialog.locator('input[data-hp="C"]').fill('0.5');
  await screenshot('train-form');
  await dialog.locator('.jp-mod-accept').click();
  await dialog.waitFor({ state: 'detached' });

  step('the run succeeds with its metric');
  const runItem = page.locator('#mlplatform-panel [data-run]').first();
  await runItem.waitFor();
  // Open the details while the run is (most likely) still going: its log is followed live.
  const openedWhile = await runItem.locator('.mlp-status').getAttribute('data-status');
  console.log(`details opened while the run was ${openedWhile}`);
  await runItem.getByRole('button', { name: /Logs and metrics/ }).click();
  await runItem.locator('.mlp-status[data-status="succeeded"]').waitFor({ timeout: 180_000 });
  await page.waitForFunction(() => /accuracy=/.test(document.querySelector('#mlplatform-panel [data-run] .mlp-metrics')?.textContent ?? ''));
  const runText = await runItem.innerText();
  expectText(runText, /accuracy=0\.\d+/, 'run metrics');
  expectText(runText, /C=0\.5\b/, 'overridden hyperparameter on the run');
  await runItem.locator('.mlp-logs').filter({ hasText: 'trained with C=0.5' }).waitFor();
  await runItem.locator('svg.mlp-chart').first().waitFor();
  await screenshot('run-succeeded');

  step('a bad hyperparameter value is refused with the server message');
  await toolbarButton('mlplatform:train').click();
  await dialog.locator('input[data-hp="max_iter"]').fill('2.5');
  await dialog.locator('.jp-mod-accept').click();
  const formError = page.locator('.jp-Dialog .mlp-form-error:not([hidden])');
  await formError.waitFor();
  const refused = await formError.innerText();
  expectText(refused, /max_iter/, 'error names the hyperparameter');
  expectText(refused, /int/, "error says what was expected");
  if (/object Object/.test(refused)) throw new Error(`unreadable error: ${refused}`);
  expectText(await page.locator('.jp-Dialog input[data-hp="max_iter"]').inputValue(), /^2\.5$/, 'typed value kept');
  await screenshot('bad-hyperparameter');
  await page.locator('.jp-Dialog .jp-mod-reject').click();
  await dialog.waitFor({ state: 'detached' });
  console.log(`refused with: ${refused}`);

  step('deploy the finished run');
  await toolbarButton('mlplatform:deploy').click();
  await dialog.getByLabel('Finished run').waitFor();
  expectText(await dialog.getByLabel('Finished run').innerText(), /iris v1/, 'finished run offered');
  await dialog.getByLabel('Deployment name').fill('iris');
  await screenshot('deploy-dialog');
  await dialog.locator('.jp-mod-accept').click();
  await dialog.waitFor({ state: 'detached' });
  const depItem = page.locator('#mlplatform-panel [data-deployment="iris"]');
  await depItem.locator('.mlp-status[data-status="ready"]').waitFor({ timeout: 120_000 });
  await page.waitForFunction(() => /URL http:\/\//.test(document.querySelector('#mlplatform-panel [data-deployment="iris"] .mlp-url')?.textContent ?? ''));
  await screenshot('deployed');

  step('invoke it from the try-it box');
  await depItem.getByLabel('Request JSON for iris').fill(
    '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}');
  await depItem.getByRole('button', { name: 'Invoke iris' }).click();
  const response = depItem.locator('.mlp-try-response');
  await response.filter({ hasText: 'species' }).waitFor();
  expectText(await response.innerText(), /"species": "setosa"/, 'prediction');
  await response.scrollIntoViewIfNeeded();
  await screenshot('invoked');

  step('keyboard: the Invoke button is reachable with Tab from the request box');
  await depItem.getByLabel('Request JSON for iris').focus();
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => document.activeElement?.getAttribute('aria-label'));
  expectText(String(focused), /^Invoke iris$/, 'focus after Tab');

  step('status bar');
  expectText(await page.locator('.mlp-statusbar').innerText(), /^ML: 0 running$/, 'status bar count');
  console.log('UI flow passed');
} catch (error) {
  console.error(`FAILED at step "${current}": ${error.message}`);
  if (consoleErrors.length) console.error(`browser console errors:\n${consoleErrors.join('\n')}`);
  await screenshot('failure').catch(() => {});
  await browser.close();
  process.exit(1);
}
await browser.close();
