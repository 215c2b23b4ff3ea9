/** Dialog bodies for Save as model, Train and Deploy (values read back with getValue). */
import { Dialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { BUILDERS, Hyperparameter, Inspection, MLPlatformClient, ModelSummary, Profile, Profiles, Run } from './api';
import { field, h, select } from './dom';
import { defaultProfile, formatValue, inputKind, suggestDeploymentName } from './forms';

/** A select of environments or hardware sizes: the given one, else the admin's default. */
function profileSelect(profiles: Profile[], value: string, name: string): HTMLSelectElement {
  return select(
    profiles.map(p => ({ value: p.name, label: p.display_name || p.name })),
    value || defaultProfile(profiles),
    { name }
  );
}

function errorBox(message?: string): HTMLElement {
  return h('div', { className: 'mlp-error mlp-form-error', role: 'alert', hidden: !message }, message ?? '');
}

// -- Save as model ------------------------------------------------------------------
export interface SaveValue {
  name: string;
  version: string;
}

export class SaveModelBody extends Widget implements Dialog.IBodyWidget<SaveValue> {
  private readonly nameInput: HTMLInputElement;
  private readonly versionInput: HTMLInputElement;

  constructor(path: string, inspection: Inspection, value: SaveValue, error?: string) {
    super();
    this.addClass('mlp-form');
    this.nameInput = h('input', { type: 'text', value: value.name, required: true, name: 'name', 'aria-required': 'true' });
    this.versionInput = h('input', { type: 'text', value: value.version, name: 'version', placeholder: 'next number' });
    const hps = inspection.hyperparameters;
    const table = hps.length
      ? h('table', { className: 'mlp-hp-table', 'aria-label': 'Detected hyperparameters' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Hyperparameter'), h('th', {}, 'Type'), h('th', {}, 'Default'))),
          h('tbody', {}, ...hps.map(hp => h('tr', {}, h('td', {}, hp.name), h('td', {}, hp.type), h('td', {}, JSON.stringify(hp.default))))))
      : h('p', {}, 'No hyperparameters detected (give the Model class a `hyperparameters` dict).');
    const warnings = inspection.warnings.length
      ? h('ul', { className: 'mlp-warnings', 'aria-label': 'Warnings' }, ...inspection.warnings.map(w => h('li', {}, w)))
      : h('p', { className: 'mlp-ok' }, 'No warnings.');
    const dropped = inspection.cells.filter(c => !c.kept).length;
    this.node.append(
      errorBox(error),
      h('p', {}, `Notebook: ${path}`),
      field('Model name', this.nameInput),
      field('Version', this.versionInput, 'optional; default: the next number'),
      h('h3', {}, 'Detected hyperparameters'),
      table,
      h('p', {}, `Methods: ${inspection.methods.join(', ') || 'none'} · ${dropped} exploratory cell(s) left out`),
      h('h3', {}, 'Warnings'),
      warnings
    );
  }

  getValue(): SaveValue {
    return { name: this.nameInput.value.trim(), version: this.versionInput.value.trim() };
  }
}

// -- Train -------------------------------------------------------------------------
export interface TrainValue {
  model: string;
  version: string;
  raw: Record<string, string | boolean>;
  environment: string;
  hardware: string;
}

/** One input per hyperparameter, typed from the contract (number, checkbox, text, JSON). */
export function hyperparameterInput(hp: Hyperparameter, value: unknown): HTMLInputElement | HTMLTextAreaElement {
  const kind = inputKind(hp);
  const attrs = { name: `hp-${hp.name}`, 'data-hp': hp.name, 'data-kind': kind };
  switch (kind) {
    case 'boolean': {
      const box = h('input', { ...attrs, type: 'checkbox' });
      box.checked = Boolean(value);
      return box;
    }
    case 'integer':
      // step any: the browser would block 2.5 itself; the server says what an int hyperparameter accepts
      return h('input', { ...attrs, type: 'number', step: 'any', inputmode: 'numeric', value: formatValue(kind, value) });
    case 'number':
      return h('input', { ...attrs, type: 'number', step: 'any', value: formatValue(kind, value) });
    case 'json':
      return h('textarea', { ...attrs, rows: 2 }, formatValue(kind, value));
    default:
      return h('input', { ...attrs, type: 'text', value: formatValue(kind, value) });
  }
}

export class TrainBody extends Widget implements Dialog.IBodyWidget<TrainValue> {
  private readonly modelSelect: HTMLSelectElement;
  private readonly versionInput: HTMLSelectElement;
  private readonly envSelect: HTMLSelectElement;
  private readonly hwSelect: HTMLSelectElement;
  private readonly hpBox: HTMLElement;
  private inputs: (HTMLInputElement | HTMLTextAreaElement)[] = [];

  constructor(
    private readonly client: MLPlatformClient,
    models: ModelSummary[],
    profiles: Profiles,
    hyperparameters: Hyperparameter[],
    value: TrainValue,
    error?: string
  ) {
    super();
    this.addClass('mlp-form');
    this.modelSelect = select(models.map(m => ({ value: m.name, label: m.name })), value.model, { name: 'model' });
    this.versionInput = select([], undefined, { name: 'version' });
    this.envSelect = profileSelect(profiles.environments, value.environment, 'environment');
    this.hwSelect = profileSelect(profiles.hardware, value.hardware, 'hardware');
    this.hpBox = h('fieldset', { className: 'mlp-hps' });
    this.fillVersions(models, value.model, value.version);
    this.fillHyperparameters(hyperparameters, value.raw);
    this.modelSelect.addEventListener('change', () => {
      this.fillVersions(models, this.modelSelect.value);
      void this.reloadHyperparameters();
    });
    this.versionInput.addEventListener('change', () => void this.reloadHyperparameters());
    this.node.append(
      errorBox(error),
      field('Model', this.modelSelect),
      field('Version', this.versionInput),
      this.hpBox,
      field('Environment', this.envSelect),
      field('Hardware', this.hwSelect)
    );
  }

  private fillVersions(models: ModelSummary[], model: string, version?: string): void {
    const versions = models.find(m => m.name === model)?.versions ?? [];
    const chosen = version || versions[versions.length - 1];
    this.versionInput.replaceChildren(
      ...versions.map(v => {
        const opt = h('option', { value: v }, v);
        opt.selected = v === chosen;
        return opt;
      })
    );
  }

  private async reloadHyperparameters(): Promise<void> {
    const model = this.modelSelect.value;
    const version = this.versionInput.value;
    if (!model || !version) {
      this.fillHyperparameters([], {});
      return;
    }
    try {
      const info = await this.client.modelVersion(model, version);
      this.fillHyperparameters(info.hyperparameters, {});
    } catch (error) {
      this.hpBox.replaceChildren(errorBox((error as Error).message));
    }
  }

  private fillHyperparameters(hps: Hyperparameter[], raw: Record<string, string | boolean>): void {
    this.inputs = hps.map(hp => hyperparameterInput(hp, hp.name in raw ? this.rawToValue(hp, raw[hp.name]) : hp.default));
    this.hpBox.replaceChildren(
      h('legend', {}, 'Hyperparameters'),
      ...(hps.length
        ? hps.map((hp, i) => field(hp.name, this.inputs[i], `${hp.type}, default ${JSON.stringify(hp.default)}`))
        : [h('p', {}, 'This version has no hyperparameters.')])
    );
  }

  /** Keep what the researcher typed when the form is shown again after a refusal. */
  private rawToValue(hp: Hyperparameter, raw: string | boolean): unknown {
    const kind = inputKind(hp);
    if (kind === 'boolean' || kind === 'text') {
      return raw;
    }
    if (kind === 'json') {
      try {
        return JSON.parse(String(raw));
      } catch {
        return raw;
      }
    }
    return raw;
  }

  getValue(): TrainValue {
    const raw: Record<string, string | boolean> = {};
    for (const input of this.inputs) {
      const name = input.dataset.hp!;
      raw[name] = input instanceof HTMLInputElement && input.type === 'checkbox' ? input.checked : input.value;
    }
    return {
      model: this.modelSelect.value,
      version: this.versionInput.value,
      raw,
      environment: this.envSelect.value,
      hardware: this.hwSelect.value
    };
  }
}

// -- Deploy ------------------------------------------------------------------------
export interface DeployValue {
  runId: string;
  name: string;
  replicas: string;
}

export class DeployBody extends Widget implements Dialog.IBodyWidget<DeployValue> {
  private readonly runSelect: HTMLSelectElement;
  private readonly nameInput: HTMLInputElement;
  private readonly replicasInput: HTMLInputElement;

  constructor(runs: Run[], value: DeployValue, error?: string) {
    super();
    this.addClass('mlp-form');
    const label = (r: Run) => {
      const metrics = Object.entries(r.metrics || {}).map(([k, v]) => `${k} ${Number(v).toFixed(3)}`).join(', ');
      return `${r.model} v${r.version} · run ${r.id.slice(0, 8)}${metrics ? ' · ' + metrics : ''}`;
    };
    this.runSelect = select(runs.map(r => ({ value: r.id, label: label(r) })), value.runId || runs[0]?.id, { name: 'run' });
    const chosen = runs.find(r => r.id === this.runSelect.value);
    this.nameInput = h('input', { type: 'text', name: 'name', value: value.name || suggestDeploymentName(chosen?.model ?? '') });
    this.replicasInput = h('input', { type: 'number', name: 'replicas', min: '1', step: '1', value: value.replicas || '1' });
    this.runSelect.addEventListener('change', () => {
      const run = runs.find(r => r.id === this.runSelect.value);
      if (run) {
        this.nameInput.value = suggestDeploymentName(run.model);
      }
    });
    this.node.append(
      errorBox(error),
      runs.length ? field('Finished run', this.runSelect) : h('p', {}, 'No finished training run yet: train a model first.'),
      field('Deployment name', this.nameInput),
      field('Replicas', this.replicasInput)
    );
  }

  getValue(): DeployValue {
    return { runId: this.runSelect.value, name: this.nameInput.value.trim(), replicas: this.replicasInput.value };
  }
}

// -- Containerize ------------------------------------------------------------------
export interface ContainerizeValue {
  model: string;
  version: string;
  environment: string;
  builder: string;
}

/** Model, version, environment and builder; shows the build context (Dockerfile, files) it would use. */
export class ContainerizeBody extends Widget implements Dialog.IBodyWidget<ContainerizeValue> {
  private readonly modelSelect: HTMLSelectElement;
  private readonly versionSelect: HTMLSelectElement;
  private readonly envSelect: HTMLSelectElement;
  private readonly builderSelect: HTMLSelectElement;
  private readonly contextBox: HTMLElement;

  constructor(
    private readonly client: MLPlatformClient,
    private readonly models: ModelSummary[],
    profiles: Profiles,
    value: ContainerizeValue,
    error?: string
  ) {
    super();
    this.addClass('mlp-form');
    this.modelSelect = select(models.map(m => ({ value: m.name, label: m.name })), value.model, { name: 'model' });
    this.versionSelect = select([], undefined, { name: 'version' });
    this.envSelect = profileSelect(profiles.environments, value.environment, 'environment');
    this.builderSelect = select(BUILDERS.map(b => ({ value: b, label: b })), value.builder || 'auto', { name: 'builder' });
    this.contextBox = h('div', { className: 'mlp-build-context', 'aria-live': 'polite' });
    this.fillVersions(value.version);
    this.modelSelect.addEventListener('change', () => {
      this.fillVersions();
      void this.loadContext();
    });
    for (const el of [this.versionSelect, this.envSelect]) {
      el.addEventListener('change', () => void this.loadContext());
    }
    this.node.append(
      errorBox(error),
      field('Model', this.modelSelect),
      field('Version', this.versionSelect),
      field('Environment', this.envSelect),
      field('Builder', this.builderSelect, 'auto: layer when nothing is to be installed, else engine (buildkit on Kubernetes)'),
      this.contextBox
    );
    void this.loadContext();
  }

  private fillVersions(version?: string): void {
    const versions = this.models.find(m => m.name === this.modelSelect.value)?.versions ?? [];
    const chosen = version || versions[versions.length - 1];
    this.versionSelect.replaceChildren(...versions.map(v => {
      const opt = h('option', { value: v }, v);
      opt.selected = v === chosen;
      return opt;
    }));
  }

  private async loadContext(): Promise<void> {
    const { model, version, environment } = this.getValue();
    if (!model || !version) {
      return;
    }
    try {
      const ctx = await this.client.buildContext(model, version, environment);
      this.contextBox.replaceChildren(
        h('p', {}, `Base image ${ctx.base_image} · ${ctx.files.length} file(s), ${ctx.size} bytes · auto picks ${ctx.builder}`),
        h('pre', { className: 'mlp-dockerfile', 'aria-label': 'Generated Dockerfile', tabindex: 0 }, ctx.dockerfile)
      );
    } catch (error) {
      this.contextBox.replaceChildren(errorBox((error as Error).message));
    }
  }

  getValue(): ContainerizeValue {
    return {
      model: this.modelSelect.value,
      version: this.versionSelect.value,
      environment: this.envSelect.value,
      builder: this.builderSelect.value
    };
  }
}
