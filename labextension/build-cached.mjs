// Build the prebuilt extension only when its inputs changed: the sha256 of the sources, styles,
// schema, package.json, lockfile and tsconfig is kept in .build-stamp beside the output check.
// `node build-cached.mjs --hash` prints the hash (scripts/install-venv.sh stamps pip with it).
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const INPUTS = ['src', 'style', 'schema', 'package.json', 'package-lock.json', 'tsconfig.json', 'install.json'];
const OUTPUT = join(here, '..', 'mlplatform_server', 'labextension');
const STAMP = join(here, '.build-stamp');

function files(path) {
  if (!existsSync(path)) return [];
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path).sort().flatMap(name => files(join(path, name)));
}

export function sourceHash() {
  const hash = createHash('sha256');
  for (const file of INPUTS.flatMap(p => files(join(here, p)))) {
    hash.update(relative(here, file) + '\0');
    hash.update(readFileSync(file));
    hash.update('\0');
  }
  return hash.digest('hex');
}

const want = sourceHash();
if (process.argv.includes('--hash')) {
  console.log(want);
  process.exit(0);
}
const built = existsSync(join(OUTPUT, 'package.json')) && existsSync(join(OUTPUT, 'static', 'style.js'));
const have = existsSync(STAMP) ? readFileSync(STAMP, 'utf8').trim() : '';
if (built && have === want && !process.argv.includes('--force')) {
  console.log(`labextension: up to date (${want.slice(0, 12)})`);
  process.exit(0);
}
const started = Date.now();
execFileSync('npm', ['run', 'build:prod'], { cwd: here, stdio: 'inherit' });
writeFileSync(STAMP, want + '\n');
console.log(`labextension: built in ${((Date.now() - started) / 1000).toFixed(1)} s (${want.slice(0, 12)})`);
