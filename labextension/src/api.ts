/**
 * Typed requests to the mlplatform Jupyter server extension (`{base}/mlplatform/...`).
 *
 * Kept free of JupyterLab imports: the transport is injected (in the Lab it is
 * `ServerConnection.makeRequest`, see connection.ts), so the unit tests drive this
 * class against a real HTTP server with plain `fetch`.
 */

/** Sends one request; `path` is relative to the server's base URL (e.g. `mlplatform/config`). */
export type Transport = (path: string, init: RequestInit) => Promise<Response>;

/** Where a run's TensorBoard answers (a path on this Jupyter server). */
export interface TensorBoardLink {
  run: string;
  url: string;
  logdir: string;
}

export interface Hyperparameter {
  name: string;
  type: string; // int | float | bool | str | json (whatever the contract detected)
  default: unknown;
}

export interface CellVerdict {
  index: number;
  kept: boolean;
  reason: string;
}

export interface Inspection {
  hyperparameters: Hyperparameter[];
  methods: string[];
  warnings: string[];
  cells: CellVerdict[];
  content_hash: string;
}

export interface ModelSummary {
  name: string;
  owner: string;
  versions: string[];
  latest_version: string | null;
}

export interface ModelVersion {
  model: string;
  version: string;
  hyperparameters: Hyperparameter[];
  methods: string[];
  warnings: string[];
  created?: boolean;
}

export interface Profile {
  name: string;
  display_name?: string;
  default?: boolean;
}

export interface Profiles {
  environments: Profile[];
  hardware: Profile[];
}

export type RunStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled' | string;

export interface Run {
  id: string;
  kind: string;
  status: RunStatus;
  reason: string | null;
  model: string;
  version: string;
  hyperparameters: Record<string, unknown>;
  metrics: Record<string, number>;
  hardware?: Profile | null;
  environment?: Profile | null;
  created_at: string;
  finished_at?: string | null;
}

export interface MetricPoint {
  name: string;
  step: number | null;
  value: number;
  time: string;
}

export interface Deployment {
  name: string;
  model: string;
  version: string;
  run_id: string;
  status: string;
  reason: string | null;
  url: string | null;
  replicas: number;
  revision?: number;
}

export interface Page<T> {
  items: T[];
  total: number;
  limit: number;
  offset: number;
}

export interface LabConfig {
  platform_url: string;
  in_process: boolean;
  user: { name: string; admin: boolean };
}

export interface RunRequest {
  model: string;
  version?: string;
  hyperparameters?: Record<string, unknown>;
  hardware?: string;
  environment?: string;
}

export interface DeployRequest {
  model: string;
  run_id: string;
  version?: string;
  name?: string;
  replicas?: number;
}

export interface BuildContextInfo {
  model: string;
  version: string;
  base_image: string;
  dockerfile: string;
  files: string[];
  size: number;
  builder: string; // what `auto` would pick
}

export interface BuildResult {
  image: string;
  builder: string;
  seconds: number;
  model: string;
  version: string;
  environment: string;
  [key: string]: unknown;
}

export const BUILDERS = ['auto', 'layer', 'engine', 'buildkit'] as const;

/** The digest of an image reference (`…@sha256:…`), if it has one. */
export function imageDigest(image: string): string | null {
  const at = image.lastIndexOf('@');
  return at >= 0 ? image.slice(at + 1) : null;
}

export const TERMINAL_STATUSES = new Set(['succeeded', 'failed', 'cancelled']);

/** An answer other than 2xx, carrying the server's readable message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string = 'http_error',
    readonly details?: unknown
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/**
 * The readable message of an error answer: the server's `message` (platform and extension
 * both answer `{"error", "message"}`), else its text, else the HTTP status — never
 * "[object Object]".
 */
export function errorFromBody(status: number, statusText: string, body: string): ApiError {
  const text = body.trim();
  if (text) {
    try {
      const data = JSON.parse(text);
      if (data && typeof data === 'object') {
        const message = typeof data.message === 'string' && data.message ? data.message : undefined;
        const code = typeof data.error === 'string' ? data.error : undefined;
        if (message) {
          return new ApiError(status, message, code, data.details);
        }
        if (code) {
          return new ApiError(status, `${code} (HTTP ${status})`, code, data.details);
        }
        return new ApiError(status, `HTTP ${status}${statusText ? ' ' + statusText : ''}`);
      }
    } catch {
      // not JSON: an HTML error page or plain text
    }
    if (!text.startsWith('<') && text.length <= 500) {
      return new ApiError(status, text);
    }
  }
  return new ApiError(status, `HTTP ${status}${statusText ? ' ' + statusText : ''}`);
}

/** A transport failure (no answer at all) as a readable ApiError. */
export function networkError(error: unknown): ApiError {
  const detail = error instanceof Error ? error.message : String(error);
  return new ApiError(0, `Cannot reach the Jupyter server: ${detail}`, 'network_error');
}

function segment(value: string): string {
  return encodeURIComponent(value);
}

export class MLPlatformClient {
  constructor(private readonly transport: Transport) {}

  /** One request; JSON in, JSON (or text) out; ApiError with the server's message otherwise. */
  async request<T>(method: string, path: string, body?: unknown, asText = false): Promise<T> {
    const init: RequestInit = { method, headers: { Accept: asText ? 'text/plain' : 'application/json' } };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      (init.headers as Record<string, string>)['Content-Type'] = 'application/json';
    }
    let response: Response;
    try {
      response = await this.transport(path, init);
    } catch (error) {
      if (error instanceof ApiError) {
        throw error;
      }
      throw networkError(error);
    }
    const text = await response.text();
    if (!response.ok) {
      throw errorFromBody(response.status, response.statusText, text);
    }
    if (asText) {
      return text as unknown as T;
    }
    if (!text) {
      return undefined as unknown as T;
    }
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiError(response.status, `The server answered ${path} with something that is not JSON`, 'bad_response');
    }
  }

  private api<T>(method: string, path: string, body?: unknown, asText = false): Promise<T> {
    return this.request<T>(method, `mlplatform/api/${path}`, body, asText);
  }

  // -- the extension's own routes ------------------------------------------------
  config(): Promise<LabConfig> {
    return this.request('GET', 'mlplatform/config');
  }

  inspect(path: string): Promise<Inspection> {
    return this.request('POST', 'mlplatform/inspect', { path });
  }

  saveModel(path: string, name: string, version?: string): Promise<ModelVersion> {
    const body: Record<string, string> = { path, name };
    if (version) {
      body.version = version;
    }
    return this.request('POST', 'mlplatform/models', body);
  }

  /** POST JSON to a deployment's /invocations, relayed by the Jupyter server. */
  invoke(deployment: string, payload: unknown): Promise<unknown> {
    return this.request('POST', `mlplatform/invoke/${segment(deployment)}`, payload);
  }

  /** Start (or find) the TensorBoard of a run's logs, proxied by the Jupyter server. */
  openTensorBoard(run: string): Promise<TensorBoardLink> {
    return this.request('POST', 'mlplatform/tensorboards', { run });
  }

  // -- the platform API through the relay ---------------------------------------------
  buildContext(name: string, version: string, environment?: string): Promise<BuildContextInfo> {
    const query = environment ? `?environment=${encodeURIComponent(environment)}` : '';
    return this.api('GET', `models/${segment(name)}/versions/${segment(version)}/build${query}`);
  }

  /** Build and push the version's image (answers when the build is done). */
  buildImage(name: string, version: string, options: { environment?: string; builder?: string } = {}): Promise<BuildResult> {
    const body: Record<string, string> = {};
    if (options.environment) {
      body.environment = options.environment;
    }
    if (options.builder && options.builder !== 'auto') {
      body.builder = options.builder;
    }
    return this.api('POST', `models/${segment(name)}/versions/${segment(version)}/build`, body);
  }

  profiles(): Promise<Profiles> {
    return this.api('GET', 'profiles');
  }

  models(): Promise<Page<ModelSummary>> {
    return this.api('GET', 'models?limit=200');
  }

  modelVersion(name: string, version: string): Promise<ModelVersion> {
    return this.api('GET', `models/${segment(name)}/versions/${segment(version)}`);
  }

  runs(limit = 50): Promise<Page<Run>> {
    return this.api('GET', `runs?limit=${limit}`);
  }

  run(id: string): Promise<Run> {
    return this.api('GET', `runs/${segment(id)}`);
  }

  submitRun(request: RunRequest): Promise<Run> {
    return this.api('POST', 'runs', request);
  }

  cancelRun(id: string): Promise<Run> {
    return this.api('POST', `runs/${segment(id)}/cancel`, {});
  }

  replicateRun(id: string): Promise<Run> {
    return this.api('POST', `runs/${segment(id)}/replicate`, {});
  }

  logs(id: string): Promise<string> {
    return this.api('GET', `runs/${segment(id)}/logs`, undefined, true);
  }

  /**
   * Stream a run's log (`?follow=true`: the platform keeps the answer open until the run ends),
   * calling `onText` with each piece as it arrives. Resolves when the stream ends; abort with `signal`.
   */
  async followLogs(id: string, onText: (text: string) => void, signal?: AbortSignal): Promise<void> {
    const path = `mlplatform/api/runs/${segment(id)}/logs?follow=true`;
    let response: Response;
    try {
      response = await this.transport(path, { method: 'GET', headers: { Accept: 'text/plain' }, signal });
    } catch (error) {
      if (signal?.aborted) {
        return;
      }
      throw error instanceof ApiError ? error : networkError(error);
    }
    if (!response.ok) {
      throw errorFromBody(response.status, response.statusText, await response.text());
    }
    if (!response.body) {
      onText(await response.text());
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          break;
        }
        const text = decoder.decode(value, { stream: true });
        if (text) {
          onText(text);
        }
      }
      const rest = decoder.decode();
      if (rest) {
        onText(rest);
      }
    } catch (error) {
      if (!signal?.aborted) {
        throw networkError(error);
      }
    }
  }

  metrics(id: string): Promise<{ items: MetricPoint[] }> {
    return this.api('GET', `runs/${segment(id)}/metrics`);
  }

  deployments(): Promise<Page<Deployment>> {
    return this.api('GET', 'deployments?limit=200');
  }

  deployment(name: string): Promise<Deployment> {
    return this.api('GET', `deployments/${segment(name)}`);
  }

  deploy(request: DeployRequest): Promise<Deployment> {
    return this.api('POST', 'deployments', request);
  }

  undeploy(name: string): Promise<void> {
    return this.api('DELETE', `deployments/${segment(name)}`);
  }
}
