/**
 * The request helpers against a real HTTP server on loopback (plain fetch as the transport),
 * answering the way the Jupyter server extension and the platform do.
 */
import { AddressInfo } from 'net';
import http from 'http';

import { ApiError, MLPlatformClient, errorFromBody, imageDigest } from '../src/api';

interface Seen {
  method: string;
  url: string;
  body: string;
  contentType: string | undefined;
}

type Answer = { status: number; body: string; type?: string };

let server: http.Server;
let base: string;
const seen: Seen[] = [];
const answers = new Map<string, Answer>();

function answer(method: string, path: string, status: number, body: unknown, type = 'application/json'): void {
  answers.set(`${method} ${path}`, { status, body: typeof body === 'string' ? body : JSON.stringify(body), type });
}

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', chunk => (body += chunk));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, body, contentType: req.headers['content-type'] });
      const found = answers.get(`${req.method} ${req.url}`);
      if (!found) {
        res.writeHead(404, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: 'not_found', message: `No route ${req.method} ${req.url}` }));
        return;
      }
      res.writeHead(found.status, found.type ? { 'Content-Type': found.type } : {});
      res.end(found.body);
    });
  });
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/user/alice/`;
});

afterAll(async () => {
  await new Promise(resolve => server.close(resolve));
});

beforeEach(() => {
  seen.length = 0;
  answers.clear();
});

const client = () => new MLPlatformClient((path, init) => fetch(base + path, init));

describe('request helpers', () => {
  it('reaches the relay under the base URL and parses JSON', async () => {
    answer('GET', '/user/alice/mlplatform/api/runs?limit=50', 200, { items: [{ id: 'r1', status: 'running' }], total: 1, limit: 50, offset: 0 });
    const page = await client().runs();
    expect(page.items[0].id).toBe('r1');
    expect(seen[0].method).toBe('GET');
  });

  it('sends JSON bodies with a JSON content type', async () => {
    answer('POST', '/user/alice/mlplatform/api/runs', 201, { id: 'r2', status: 'pending' });
    const run = await client().submitRun({ model: 'iris', hyperparameters: { C: 0.5 } });
    expect(run.id).toBe('r2');
    expect(JSON.parse(seen[0].body)).toEqual({ model: 'iris', hyperparameters: { C: 0.5 } });
    expect(seen[0].contentType).toBe('application/json');
  });

  it('uses the extension routes for inspect, save and invoke', async () => {
    answer('POST', '/user/alice/mlplatform/inspect', 200, { hyperparameters: [], methods: ['train'], warnings: ['no predict'], cells: [], content_hash: 'x' });
    answer('POST', '/user/alice/mlplatform/models', 201, { model: 'iris', version: '1', hyperparameters: [], methods: [], warnings: [] });
    answer('POST', '/user/alice/mlplatform/invoke/iris%20demo', 200, { label: 0 });
    const c = client();
    expect((await c.inspect('work/iris.ipynb')).warnings).toEqual(['no predict']);
    expect((await c.saveModel('work/iris.ipynb', 'iris')).version).toBe('1');
    expect(await c.invoke('iris demo', { x: 1 })).toEqual({ label: 0 });
    expect(JSON.parse(seen[0].body)).toEqual({ path: 'work/iris.ipynb' });
    expect(JSON.parse(seen[1].body)).toEqual({ path: 'work/iris.ipynb', name: 'iris' }); // no empty version
    expect(JSON.parse(seen[2].body)).toEqual({ x: 1 });
  });

  it("opens a run's TensorBoard through the extension route", async () => {
    answer('POST', '/user/alice/mlplatform/tensorboards', 200,
      { run: 'r1', url: '/user/alice/mlplatform/tensorboard/r1/', logdir: '/data/runs/r1/artifacts' });
    expect((await client().openTensorBoard('r1')).url).toBe('/user/alice/mlplatform/tensorboard/r1/');
    expect(JSON.parse(seen[0].body)).toEqual({ run: 'r1' });
    answer('POST', '/user/alice/mlplatform/tensorboards', 404, { error: 'not_found', message: "No run with id 'zz'" });
    expect((await client().openTensorBoard('zz').catch(e => e)).message).toBe("No run with id 'zz'");
  });

  it('encodes path segments', async () => {
    answer('GET', '/user/alice/mlplatform/api/models/a%2Fb/versions/1', 200, { model: 'a/b', version: '1', hyperparameters: [], methods: [], warnings: [] });
    expect((await client().modelVersion('a/b', '1')).model).toBe('a/b');
  });

  it("throws the server's message for a refused hyperparameter", async () => {
    answer('POST', '/user/alice/mlplatform/api/runs', 400, {
      error: 'invalid_hyperparameter',
      message: "Hyperparameter 'max_iter' expects int (default 200), got 2.5",
      details: { name: 'max_iter' }
    });
    const error = await client().submitRun({ model: 'iris', hyperparameters: { max_iter: 2.5 } }).catch(e => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(400);
    expect(error.code).toBe('invalid_hyperparameter');
    expect(error.message).toBe("Hyperparameter 'max_iter' expects int (default 200), got 2.5");
    expect(error.details).toEqual({ name: 'max_iter' });
    expect(String(error)).not.toContain('[object Object]');
  });

  it('builds a version image with only the options given', async () => {
    answer('GET', '/user/alice/mlplatform/api/models/iris/versions/2/build?environment=python', 200,
      { model: 'iris', version: '2', base_image: 'b', dockerfile: 'FROM b', files: ['model.py'], size: 10, builder: 'layer' });
    answer('POST', '/user/alice/mlplatform/api/models/iris/versions/2/build', 201,
      { image: 'reg:5000/iris@sha256:abc', builder: 'layer', seconds: 0.1, model: 'iris', version: '2', environment: 'python' });
    const c = client();
    expect((await c.buildContext('iris', '2', 'python')).builder).toBe('layer');
    const result = await c.buildImage('iris', '2', { builder: 'auto' });
    expect(JSON.parse(seen[1].body)).toEqual({}); // auto: the server picks
    expect(imageDigest(result.image)).toBe('sha256:abc');
    expect(imageDigest('reg:5000/iris:v2')).toBeNull();
    await c.buildImage('iris', '2', { builder: 'engine', environment: 'python' });
    expect(JSON.parse(seen[2].body)).toEqual({ builder: 'engine', environment: 'python' });
  });

  it('streams a followed log piece by piece until the answer ends', async () => {
    const pieces: string[] = [];
    const streaming = http.createServer((req, res) => {
      expect(req.url).toBe('/user/alice/mlplatform/api/runs/r9/logs?follow=true');
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('epoch 1\n');
      setTimeout(() => res.write('epoch 2\n'), 50);
      setTimeout(() => res.end('done\n'), 100);
    });
    await new Promise<void>(resolve => streaming.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(streaming.address() as AddressInfo).port}/user/alice/`;
    const c = new MLPlatformClient((path, init) => fetch(url + path, init));
    await c.followLogs('r9', text => pieces.push(text));
    await new Promise(resolve => streaming.close(resolve));
    expect(pieces.join('')).toBe('epoch 1\nepoch 2\ndone\n');
    expect(pieces.length).toBeGreaterThan(1); // it arrived in pieces, not at the end
  });

  it("a followed log's error answer carries the server message", async () => {
    answer('GET', '/user/alice/mlplatform/api/runs/nope/logs?follow=true', 404, { error: 'not_found', message: "No run 'nope'" });
    await expect(client().followLogs('nope', () => undefined)).rejects.toThrow("No run 'nope'");
  });

  it('returns log text as text', async () => {
    answer('GET', '/user/alice/mlplatform/api/runs/r1/logs', 200, 'epoch 1\nepoch 2\n', 'text/plain');
    expect(await client().logs('r1')).toBe('epoch 1\nepoch 2\n');
  });

  it('accepts an empty 204 answer', async () => {
    answer('DELETE', '/user/alice/mlplatform/api/deployments/iris', 204, '', '');
    await expect(client().undeploy('iris')).resolves.toBeUndefined();
  });

  it('reports an unreachable server readably', async () => {
    const dead = new MLPlatformClient((path, init) => fetch('http://127.0.0.1:1/' + path, init));
    const error = await dead.config().catch(e => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(0);
    expect(error.message).toMatch(/^Cannot reach the Jupyter server: /);
  });

  it('refuses a 200 answer that is not JSON', async () => {
    answer('GET', '/user/alice/mlplatform/config', 200, '<html>login</html>', 'text/html');
    await expect(client().config()).rejects.toThrow('with something that is not JSON');
  });
});

describe('errorFromBody', () => {
  it('prefers message, then error code, then short text, then the status', () => {
    expect(errorFromBody(409, 'Conflict', '{"error":"conflict","message":"Name taken"}').message).toBe('Name taken');
    expect(errorFromBody(500, 'Internal', '{"error":"internal"}').message).toBe('internal (HTTP 500)');
    expect(errorFromBody(502, 'Bad Gateway', 'upstream down').message).toBe('upstream down');
    expect(errorFromBody(403, 'Forbidden', '<html><body>nope</body></html>').message).toBe('HTTP 403 Forbidden');
    expect(errorFromBody(500, '', '{"message": {"nested": true}}').message).toBe('HTTP 500');
    expect(errorFromBody(404, 'Not Found', '').message).toBe('HTTP 404 Not Found');
  });
});
