/**
 * The "ML Platform" left sidebar: one section per resource. Sections are registered by name,
 * so later views (sweeps, GitHub push, credentials) add a section without reshaping the panel.
 */
import { Notification } from '@jupyterlab/apputils';
import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';

import { ApiError, Deployment, ModelSummary, Run, TERMINAL_STATUSES } from './api';
import { h, sparkline, uid } from './dom';
import { metricSeries, parseRequestJson } from './forms';
import { PlatformState } from './state';

export interface ISection {
  id: string;
  title: string;
  render(state: PlatformState): HTMLElement;
  update(state: PlatformState): void;
}

/** Elements keyed by id, reused between polls so open details, typed text and focus survive. */
class KeyedList<T> {
  private readonly nodes = new Map<string, HTMLElement>();
  constructor(
    readonly root: HTMLElement,
    private readonly key: (item: T) => string,
    private readonly create: (item: T) => HTMLElement,
    private readonly update: (node: HTMLElement, item: T) => void
  ) {}

  set(items: T[]): void {
    const seen = new Set<string>();
    let previous: HTMLElement | null = null;
    for (const item of items) {
      const k = this.key(item);
      seen.add(k);
      let node = this.nodes.get(k);
      if (!node) {
        node = this.create(item);
        this.nodes.set(k, node);
      }
      this.update(node, item);
      const expected: ChildNode | null = previous ? previous.nextSibling : this.root.firstChild;
      if (expected !== node) {
        this.root.insertBefore(node, expected);
      }
      previous = node;
    }
    for (const [k, node] of this.nodes) {
      if (!seen.has(k)) {
        node.remove();
        this.nodes.delete(k);
      }
    }
  }
}

function badge(status: string): HTMLElement {
  return h('span', { className: `mlp-status mlp-status-${status}`, 'data-status': status }, status);
}

function formatMetrics(metrics: Record<string, number>): string {
  return Object.entries(metrics)
    .map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toFixed(4)}`)
    .join('  ');
}

async function act(label: string, fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (error) {
    Notification.error(`${label}: ${error instanceof ApiError ? error.message : String(error)}`, { autoClose: 8000 });
  }
}

export class ModelsSection implements ISection {
  id = 'models';
  title = 'Models';
  private list: KeyedList<ModelSummary> | null = null;

  constructor(private readonly commands: CommandRegistry) {}

  render(state: PlatformState): HTMLElement {
    const root = h('ul', { className: 'mlp-list', 'aria-label': 'Models' });
    this.list = new KeyedList<ModelSummary>(
      root,
      m => m.name,
      m =>
        h(
          'li',
          { className: 'mlp-item', 'data-model': m.name },
          h('div', { className: 'mlp-item-title' }),
          h('div', { className: 'mlp-item-sub' }),
          h(
            'div',
            { className: 'mlp-actions' },
            h(
              'button',
              {
                className: 'jp-mod-styled mlp-button',
                'aria-label': `Train ${m.name}`,
                onclick: () => void this.commands.execute('mlplatform:train', { model: m.name })
              },
              'Train…'
            )
          )
        ),
      (node, m) => {
        node.querySelector('.mlp-item-title')!.textContent = m.name;
        node.querySelector('.mlp-item-sub')!.textContent = `versions ${m.versions.join(', ')} · latest ${m.latest_version ?? '-'}`;
      }
    );
    return root;
  }

  update(state: PlatformState): void {
    this.list?.set(state.models);
  }
}

export class RunsSection implements ISection {
  id = 'runs';
  title = 'Runs';
  private list: KeyedList<Run> | null = null;
  private readonly open = new Set<string>();
  private readonly streams = new Map<string, AbortController>();
  private state: PlatformState | null = null;

  render(state: PlatformState): HTMLElement {
    this.state = state;
    const root = h('ul', { className: 'mlp-list', 'aria-label': 'Runs' });
    this.list = new KeyedList<Run>(root, r => r.id, r => this.create(r), (node, r) => this.updateItem(node, r));
    return root;
  }

  private create(run: Run): HTMLElement {
    const details = h('div', { className: 'mlp-details', hidden: true },
      h('div', { className: 'mlp-charts' }),
      h('pre', { className: 'mlp-logs', 'aria-label': `Logs of run ${run.id}`, tabindex: 0 }));
    const toggle = h('button', {
      className: 'jp-mod-styled mlp-button mlp-toggle',
      'aria-expanded': 'false',
      'aria-label': `Logs and metrics of run ${run.id}`,
      onclick: () => {
        const opening = details.hidden;
        details.hidden = !opening;
        toggle.setAttribute('aria-expanded', String(opening));
        if (opening) {
          this.open.add(run.id);
          void this.loadDetails(this.state!.runs.find(r => r.id === run.id) ?? run, details);
        } else {
          this.open.delete(run.id);
          this.streams.get(run.id)?.abort();
          this.streams.delete(run.id);
        }
      }
    }, 'Details');
    const client = () => this.state!.client;
    return h('li', { className: 'mlp-item', 'data-run': run.id },
      h('div', { className: 'mlp-item-title' }),
      h('div', { className: 'mlp-item-sub mlp-metrics' }),
      h('div', { className: 'mlp-item-sub mlp-run-hps' }),
      h('div', { className: 'mlp-item-sub mlp-reason' }),
      h('div', { className: 'mlp-actions' },
        toggle,
        h('button', {
          className: 'jp-mod-styled mlp-button mlp-cancel',
          'aria-label': `Cancel run ${run.id}`,
          onclick: () => void act('Cancel', async () => { await client().cancelRun(run.id); await this.state!.refresh(); })
        }, 'Cancel'),
        h('button', {
          className: 'jp-mod-styled mlp-button',
          'aria-label': `Replicate run ${run.id}`,
          onclick: () => void act('Replicate', async () => { await client().replicateRun(run.id); await this.state!.refresh(); })
        }, 'Replicate'),
        h('button', {
          className: 'jp-mod-styled mlp-button mlp-tensorboard',
          'aria-label': `Open TensorBoard of run ${run.id}`,
          onclick: () => void act('TensorBoard', async () => {
            const link = await client().openTensorBoard(run.id);
            window.open(link.url, '_blank', 'noopener');
          })
        }, 'TensorBoard')),
      details);
  }

  private updateItem(node: HTMLElement, run: Run): void {
    const title = node.querySelector('.mlp-item-title')!;
    title.replaceChildren(`${run.model} v${run.version} · ${run.kind} · ${run.id.slice(0, 8)} `, badge(run.status));
    node.querySelector('.mlp-metrics')!.textContent = formatMetrics(run.metrics || {});
    node.querySelector('.mlp-run-hps')!.textContent = Object.entries(run.hyperparameters || {})
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(' ');
    node.querySelector('.mlp-reason')!.textContent = run.reason ?? '';
    (node.querySelector('.mlp-cancel') as HTMLButtonElement).hidden = TERMINAL_STATUSES.has(run.status);
    if (this.open.has(run.id)) {
      void this.loadDetails(run, node.querySelector('.mlp-details') as HTMLElement);
    }
  }

  /** Follow the log of an active run as it is written (one stream per open run). */
  private follow(id: string, logs: HTMLElement): void {
    const controller = new AbortController();
    this.streams.set(id, controller);
    logs.textContent = '';
    this.state!.client
      .followLogs(id, text => {
        const atBottom = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
        logs.textContent += text;
        if (atBottom) {
          logs.scrollTop = logs.scrollHeight;
        }
      }, controller.signal)
      .catch(error => {
        logs.textContent += `\n${error instanceof ApiError ? error.message : String(error)}`;
      })
      .finally(() => {
        if (this.streams.get(id) === controller) {
          this.streams.delete(id);
        }
      });
  }

  private async loadDetails(run: Run, details: HTMLElement): Promise<void> {
    const client = this.state!.client;
    const id = run.id;
    const logs = details.querySelector('.mlp-logs') as HTMLElement;
    const charts = details.querySelector('.mlp-charts') as HTMLElement;
    try {
      if (!TERMINAL_STATUSES.has(run.status)) {
        if (!this.streams.has(id)) {
          this.follow(id, logs);
        }
      } else if (!this.streams.has(id)) {
        logs.textContent = (await client.logs(id)) || '(no output)';
      }
      const metrics = await client.metrics(id);
      charts.replaceChildren(
        ...[...metricSeries(metrics.items)].map(([name, values]) =>
          h('figure', { className: 'mlp-metric' },
            sparkline(values, `${name} over ${values.length} steps, last ${values[values.length - 1]}`),
            h('figcaption', {}, `${name}: ${Number(values[values.length - 1].toPrecision(4))}`)))
      );
    } catch (error) {
      logs.textContent = error instanceof ApiError ? error.message : String(error);
    }
  }

  update(state: PlatformState): void {
    this.list?.set(state.runs);
  }
}

export class DeploymentsSection implements ISection {
  id = 'deployments';
  title = 'Deployments';
  private list: KeyedList<Deployment> | null = null;
  private state: PlatformState | null = null;

  render(state: PlatformState): HTMLElement {
    this.state = state;
    const root = h('ul', { className: 'mlp-list', 'aria-label': 'Deployments' });
    this.list = new KeyedList<Deployment>(root, d => d.name, d => this.create(d), (node, d) => this.updateItem(node, d));
    return root;
  }

  private create(dep: Deployment): HTMLElement {
    const requestId = uid('mlp-try');
    const request = h('textarea', {
      id: requestId,
      className: 'mlp-try-request',
      rows: 3,
      'aria-label': `Request JSON for ${dep.name}`,
      placeholder: '{"feature": 1.0}'
    });
    const output = h('pre', { className: 'mlp-try-response', role: 'status', 'aria-live': 'polite', 'aria-label': `Response of ${dep.name}` });
    const invoke = async () => {
      output.classList.remove('mlp-error');
      let payload: unknown;
      try {
        payload = parseRequestJson(request.value);
      } catch (error) {
        output.classList.add('mlp-error');
        output.textContent = (error as Error).message;
        return;
      }
      output.textContent = 'Sending…';
      try {
        const answer = await this.state!.client.invoke(dep.name, payload);
        output.textContent = JSON.stringify(answer, null, 2);
      } catch (error) {
        output.classList.add('mlp-error');
        output.textContent = error instanceof ApiError ? error.message : String(error);
      }
    };
    return h('li', { className: 'mlp-item', 'data-deployment': dep.name },
      h('div', { className: 'mlp-item-title' }),
      h('div', { className: 'mlp-item-sub mlp-url' }),
      h('div', { className: 'mlp-item-sub mlp-reason' }),
      h('div', { className: 'mlp-try' },
        h('label', { className: 'mlp-try-label', for: requestId }, 'Try it: POST /invocations'),
        request,
        h('div', { className: 'mlp-actions' },
          h('button', { className: 'jp-mod-styled jp-mod-accept mlp-button mlp-invoke', 'aria-label': `Invoke ${dep.name}`, onclick: () => void invoke() }, 'Invoke'),
          h('button', {
            className: 'jp-mod-styled mlp-button',
            'aria-label': `Undeploy ${dep.name}`,
            onclick: () => void act('Undeploy', async () => { await this.state!.client.undeploy(dep.name); await this.state!.refresh(); })
          }, 'Undeploy')),
        output));
  }

  private updateItem(node: HTMLElement, dep: Deployment): void {
    node.querySelector('.mlp-item-title')!.replaceChildren(`${dep.name} · ${dep.model} v${dep.version} `, badge(dep.status));
    node.querySelector('.mlp-url')!.textContent = dep.url ? `URL ${dep.url}` : 'URL: not yet';
    node.querySelector('.mlp-reason')!.textContent = dep.reason ?? '';
  }

  update(state: PlatformState): void {
    this.list?.set(state.deployments);
  }
}

export class PlatformPanel extends Widget {
  private readonly sections: ISection[] = [];
  private readonly body: HTMLElement;
  private readonly errorBox: HTMLElement;

  constructor(readonly state: PlatformState, commands: CommandRegistry) {
    super();
    this.id = 'mlplatform-panel';
    this.addClass('mlp-panel');
    this.title.caption = 'ML Platform';
    this.title.label = 'ML Platform';
    this.errorBox = h('div', { className: 'mlp-error', role: 'alert', hidden: true });
    const toolbar = h('div', { className: 'mlp-panel-toolbar' },
      h('h1', { className: 'mlp-panel-title' }, 'ML Platform'),
      h('button', { className: 'jp-mod-styled mlp-button', 'aria-label': 'Refresh ML Platform', onclick: () => void state.refresh() }, 'Refresh'),
      h('button', { className: 'jp-mod-styled mlp-button', 'aria-label': 'Train a model', onclick: () => void commands.execute('mlplatform:train') }, 'Train…'),
      h('button', { className: 'jp-mod-styled mlp-button', 'aria-label': 'Deploy a run', onclick: () => void commands.execute('mlplatform:deploy') }, 'Deploy…'));
    this.body = h('div', { className: 'mlp-sections' });
    this.node.append(toolbar, this.errorBox, this.body);
    state.changed.connect(this.onChanged, this);
  }

  /** Add a section (later issues: sweeps, GitHub push, credentials). */
  addSection(section: ISection): void {
    const content = section.render(this.state);
    const headingId = `mlp-section-${section.id}`;
    this.body.appendChild(
      h('section', { className: 'mlp-section', 'aria-labelledby': headingId, 'data-section': section.id },
        h('h2', { id: headingId }, section.title),
        content)
    );
    this.sections.push(section);
    section.update(this.state);
  }

  private onChanged(): void {
    this.errorBox.hidden = !this.state.error;
    this.errorBox.textContent = this.state.error ?? '';
    for (const section of this.sections) {
      section.update(this.state);
    }
  }
}
