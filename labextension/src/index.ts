/**
 * mlplatform's JupyterLab extension: the "ML Platform" sidebar, the Save as model / Train /
 * Deploy commands (palette, notebook toolbar, notebook context menu), a status-bar count of
 * running jobs and a notification when a run ends.
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, ICommandPalette, Notification, showDialog } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { CommandToolbarButton, LabIcon } from '@jupyterlab/ui-components';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import { Widget } from '@lumino/widgets';

import { ApiError, imageDigest, MLPlatformClient, ModelSummary, Page, Profiles, Run } from './api';
import { makeClient } from './connection';
import { h } from './dom';
import {
  ContainerizeBody,
  ContainerizeValue,
  DeployBody,
  DeployValue,
  SaveModelBody,
  SaveValue,
  TrainBody,
  TrainValue
} from './dialogs';
import { collectOverrides, deployableRuns, FieldError, suggestDeploymentName } from './forms';
import { DeploymentsSection, ModelsSection, PlatformPanel, RunsSection } from './panel';
import { PlatformState } from './state';

const PLUGIN_ID = 'mlplatform:plugin';

export namespace CommandIDs {
  export const open = 'mlplatform:open';
  export const refresh = 'mlplatform:refresh';
  export const save = 'mlplatform:save-model';
  export const train = 'mlplatform:train';
  export const deploy = 'mlplatform:deploy';
  export const containerize = 'mlplatform:containerize';
}

const icon = new LabIcon({
  name: 'mlplatform:icon',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
    '<g class="jp-icon3" fill="#616161"><circle cx="5" cy="12" r="3"/><circle cx="19" cy="5" r="3"/>' +
    '<circle cx="19" cy="19" r="3"/><path d="M7.6 10.7l8.8-4.4.9 1.8-8.8 4.4zM7.6 13.3l.9-1.8 8.8 4.4-.9 1.8z"/></g></svg>'
});

function message(error: unknown): string {
  if (error instanceof ApiError || error instanceof FieldError) {
    return error.message;
  }
  return error instanceof Error ? error.message : String(error);
}

/** The notebook the command acts on: the current one, or the one whose toolbar was clicked. */
function currentNotebook(tracker: INotebookTracker | null, app: JupyterFrontEnd): NotebookPanel | null {
  const current = tracker?.currentWidget ?? null;
  if (current) {
    return current;
  }
  const widget = app.shell.currentWidget;
  return widget instanceof NotebookPanel ? widget : null;
}

function modelNameFor(path: string): string {
  const base = path.split('/').pop() ?? 'model';
  return suggestDeploymentName(base.replace(/\.(ipynb|py)$/, ''));
}

class Actions {
  lastModel: { name: string; version: string } | null = null;

  constructor(
    private readonly app: JupyterFrontEnd,
    private readonly client: MLPlatformClient,
    private readonly state: PlatformState,
    private readonly panel: PlatformPanel,
    private readonly tracker: INotebookTracker | null
  ) {}

  private reveal(): void {
    this.app.shell.activateById(this.panel.id);
  }

  async saveModel(): Promise<void> {
    const notebook = currentNotebook(this.tracker, this.app);
    if (!notebook) {
      await showDialog({ title: 'Save as model', body: 'Open a notebook first.', buttons: [Dialog.okButton()] });
      return;
    }
    const path = notebook.context.path;
    if (notebook.context.model.dirty) {
      await notebook.context.save(); // the server reads the notebook from disk
    }
    let inspection;
    try {
      inspection = await this.client.inspect(path);
    } catch (error) {
      Notification.error(`Save as model: ${message(error)}`, { autoClose: 8000 });
      return;
    }
    let value: SaveValue = { name: modelNameFor(path), version: '' };
    let error: string | undefined;
    for (;;) {
      const result = await showDialog({
        title: 'Save as model',
        body: new SaveModelBody(path, inspection, value, error),
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Save' })],
        focusNodeSelector: 'input[name="name"]'
      });
      if (!result.button.accept || !result.value) {
        return;
      }
      value = result.value;
      try {
        const saved = await this.client.saveModel(path, value.name, value.version || undefined);
        this.lastModel = { name: saved.model, version: saved.version };
        Notification.success(`Saved ${saved.model} version ${saved.version}${saved.created === false ? ' (unchanged)' : ''}`, { autoClose: 5000 });
        await this.state.refresh();
        this.reveal();
        return;
      } catch (e) {
        error = message(e);
      }
    }
  }

  /** The models and profiles a Train or Containerize dialog offers; null (the user told why) when
   * they cannot be loaded or there is no model yet. */
  private async modelChoices(title: string): Promise<[Page<ModelSummary>, Profiles] | null> {
    let models: Page<ModelSummary>, profiles: Profiles;
    try {
      [models, profiles] = await Promise.all([this.client.models(), this.client.profiles()]);
    } catch (error) {
      Notification.error(`${title}: ${message(error)}`, { autoClose: 8000 });
      return null;
    }
    if (!models.items.length) {
      await showDialog({ title, body: 'No model yet: use "Save as model" on a notebook first.', buttons: [Dialog.okButton()] });
      return null;
    }
    return [models, profiles];
  }

  async train(args: ReadonlyPartialJSONObject): Promise<void> {
    const choices = await this.modelChoices('Train');
    if (!choices) {
      return;
    }
    const [models, profiles] = choices;
    const wanted = (args.model as string) || this.lastModel?.name || models.items[0].name;
    const summary = models.items.find(m => m.name === wanted) ?? models.items[0];
    const version =
      (args.version as string) ||
      (this.lastModel?.name === summary.name ? this.lastModel.version : '') ||
      summary.latest_version ||
      summary.versions[summary.versions.length - 1];
    let value: TrainValue = { model: summary.name, version, raw: {}, environment: '', hardware: '' };
    let error: string | undefined;
    for (;;) {
      let hyperparameters;
      try {
        hyperparameters = (await this.client.modelVersion(value.model, value.version)).hyperparameters;
      } catch (e) {
        Notification.error(`Train: ${message(e)}`, { autoClose: 8000 });
        return;
      }
      const result = await showDialog({
        title: 'Train',
        body: new TrainBody(this.client, models.items, profiles, hyperparameters, value, error),
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Train' })]
      });
      if (!result.button.accept || !result.value) {
        return;
      }
      value = result.value;
      try {
        const version = await this.client.modelVersion(value.model, value.version);
        const run = await this.client.submitRun({
          model: value.model,
          version: value.version,
          hyperparameters: collectOverrides(version.hyperparameters, value.raw),
          environment: value.environment || undefined,
          hardware: value.hardware || undefined
        });
        Notification.info(`Run ${run.id} started: ${run.model} v${run.version}`, { autoClose: 4000 });
        await this.state.refresh();
        this.reveal();
        return;
      } catch (e) {
        error = message(e);
      }
    }
  }

  async containerize(args: ReadonlyPartialJSONObject): Promise<void> {
    const choices = await this.modelChoices('Containerize');
    if (!choices) {
      return;
    }
    const [models, profiles] = choices;
    const model = (args.model as string) || this.lastModel?.name || models.items[0].name;
    let value: ContainerizeValue = {
      model,
      version: (args.version as string) || (this.lastModel?.name === model ? this.lastModel.version : ''),
      environment: '',
      builder: 'auto'
    };
    let error: string | undefined;
    for (;;) {
      const result = await showDialog({
        title: 'Containerize',
        body: new ContainerizeBody(this.client, models.items, profiles, value, error),
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Build image' })]
      });
      if (!result.button.accept || !result.value) {
        return;
      }
      value = result.value;
      const started = Date.now();
      const build = this.client.buildImage(value.model, value.version, { environment: value.environment, builder: value.builder });
      // Live progress: the pending notification counts the seconds until the build answers.
      const id = Notification.emit(`Building ${value.model} v${value.version}…`, 'in-progress', { autoClose: false });
      const timer = window.setInterval(() => {
        Notification.update({ id, message: `Building ${value.model} v${value.version}… ${Math.round((Date.now() - started) / 1000)} s` });
      }, 1000);
      try {
        const built = await build;
        const digest = imageDigest(built.image);
        const summary = `Built ${built.model} v${built.version} with ${built.builder} in ${Number(built.seconds).toFixed(1)} s`;
        Notification.update({ id, type: 'success', autoClose: 5000, message: summary });
        const body = h('div', { className: 'mlp-build-result' },
          h('p', {}, summary),
          h('div', { className: 'mlp-field' }, h('span', { className: 'mlp-label' }, 'Image'),
            h('code', { className: 'mlp-image', tabindex: 0 }, built.image)),
          h('div', { className: 'mlp-field' }, h('span', { className: 'mlp-label' }, 'Digest'),
            h('code', { className: 'mlp-digest', tabindex: 0 }, digest ?? 'none (the registry gave no digest)')));
        await showDialog({ title: 'Image built', body: new Widget({ node: body }), buttons: [Dialog.okButton()] });
        await this.state.refresh();
        return;
      } catch (e) {
        Notification.dismiss(id);
        error = message(e);
      } finally {
        window.clearInterval(timer);
      }
    }
  }

  async deploy(args: ReadonlyPartialJSONObject): Promise<void> {
    let runs: Run[];
    try {
      runs = deployableRuns((await this.client.runs(200)).items);
    } catch (error) {
      Notification.error(`Deploy: ${message(error)}`, { autoClose: 8000 });
      return;
    }
    let value: DeployValue = { runId: (args.run_id as string) || '', name: '', replicas: '1' };
    let error: string | undefined;
    for (;;) {
      const result = await showDialog({
        title: 'Deploy',
        body: new DeployBody(runs, value, error),
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Deploy' })]
      });
      if (!result.button.accept || !result.value) {
        return;
      }
      value = result.value;
      const run = runs.find(r => r.id === value.runId);
      if (!run) {
        error = 'Pick a finished training run to deploy.';
        continue;
      }
      const replicas = Number(value.replicas);
      try {
        const dep = await this.client.deploy({
          model: run.model,
          version: run.version,
          run_id: run.id,
          name: value.name || undefined,
          replicas: Number.isFinite(replicas) && value.replicas.trim() ? replicas : undefined
        });
        Notification.info(`Deploying ${dep.name}…`, { autoClose: 4000 });
        await this.state.refresh();
        this.reveal();
        void this.watchDeployment(dep.name);
        return;
      } catch (e) {
        error = message(e);
      }
    }
  }

  /** Refresh until the deployment is ready (or failed), then say where it answers. */
  private async watchDeployment(name: string): Promise<void> {
    for (let i = 0; i < 120; i++) {
      await new Promise(resolve => setTimeout(resolve, 1000));
      try {
        const dep = await this.client.deployment(name);
        if (dep.status === 'ready' || dep.status === 'failed') {
          await this.state.refresh();
          if (dep.status === 'ready') {
            Notification.success(`${name} is ready at ${dep.url}`, { autoClose: 6000 });
          } else {
            Notification.error(`${name} failed: ${dep.reason ?? 'no reason given'}`, { autoClose: false });
          }
          return;
        }
      } catch {
        return;
      }
    }
  }
}

/** Status-bar item: how many runs are pending or running. */
class RunningItem extends Widget {
  constructor(private readonly state: PlatformState) {
    super();
    this.addClass('mlp-statusbar');
    this.node.setAttribute('role', 'status');
    state.changed.connect(this.update, this);
    this.update();
  }

  update(): void {
    const n = this.state.runningCount;
    this.node.textContent = `ML: ${n} running`;
    this.node.title = `${n} ML Platform run(s) pending or running`;
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'ML Platform: save, train and deploy notebook models from JupyterLab.',
  autoStart: true,
  optional: [ICommandPalette, INotebookTracker, ILayoutRestorer, IStatusBar, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    tracker: INotebookTracker | null,
    restorer: ILayoutRestorer | null,
    statusBar: IStatusBar | null,
    settings: ISettingRegistry | null
  ) => {
    const client = makeClient();
    const state = new PlatformState(client);
    const panel = new PlatformPanel(state, app.commands);
    panel.title.icon = icon;
    panel.addSection(new ModelsSection(app.commands));
    panel.addSection(new RunsSection());
    panel.addSection(new DeploymentsSection());
    app.shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, 'mlplatform-panel');
    const actions = new Actions(app, client, state, panel, tracker);

    state.runFinished.connect((_, run) => {
      const metrics = Object.entries(run.metrics || {}).map(([k, v]) => `${k}=${Number(v).toFixed(4)}`).join(', ');
      const text = `Run ${run.id} (${run.model} v${run.version}) ${run.status}${metrics ? ': ' + metrics : ''}`;
      if (run.status === 'succeeded') {
        Notification.success(text, { autoClose: 6000 });
      } else if (run.status === 'failed') {
        Notification.error(`${text}${run.reason ? ' — ' + run.reason : ''}`, { autoClose: false });
      } else {
        Notification.info(text, { autoClose: 6000 });
      }
    });

    const { commands } = app;
    const hasNotebook = () => currentNotebook(tracker, app) !== null;
    commands.addCommand(CommandIDs.open, {
      label: 'ML Platform: Open Sidebar',
      execute: () => app.shell.activateById(panel.id)
    });
    commands.addCommand(CommandIDs.refresh, {
      label: 'ML Platform: Refresh',
      execute: () => state.refresh()
    });
    commands.addCommand(CommandIDs.save, {
      label: args => (args.toolbar ? 'Save as model' : 'ML Platform: Save Notebook as Model…'),
      caption: 'Save this notebook as a model version (shows the detected hyperparameters first)',
      isEnabled: hasNotebook,
      execute: () => actions.saveModel()
    });
    commands.addCommand(CommandIDs.train, {
      label: args => (args.toolbar ? 'Train' : 'ML Platform: Train…'),
      caption: 'Start a training run with chosen hyperparameters, environment and hardware',
      execute: args => actions.train(args)
    });
    commands.addCommand(CommandIDs.containerize, {
      label: args => (args.toolbar ? 'Containerize' : 'ML Platform: Containerize…'),
      caption: 'Build and push the image of a model version (environment, builder), shows its digest',
      execute: args => actions.containerize(args)
    });
    commands.addCommand(CommandIDs.deploy, {
      label: args => (args.toolbar ? 'Deploy' : 'ML Platform: Deploy…'),
      caption: 'Deploy a finished training run behind /invocations',
      execute: args => actions.deploy(args)
    });

    if (palette) {
      for (const command of [CommandIDs.open, CommandIDs.refresh, CommandIDs.save, CommandIDs.containerize, CommandIDs.train, CommandIDs.deploy]) {
        palette.addItem({ command, category: 'ML Platform' });
      }
    }

    app.contextMenu.addItem({ type: 'separator', selector: '.jp-Notebook', rank: 90 });
    for (const [i, command] of [CommandIDs.save, CommandIDs.containerize, CommandIDs.train, CommandIDs.deploy].entries()) {
      app.contextMenu.addItem({ command, selector: '.jp-Notebook', rank: 91 + i });
    }

    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (nb: NotebookPanel) => {
        const buttons = [CommandIDs.save, CommandIDs.containerize, CommandIDs.train, CommandIDs.deploy].map(
          id => new CommandToolbarButton({ commands, id, args: { toolbar: true } })
        );
        buttons.forEach((button, i) => nb.toolbar.insertItem(20 + i, `mlplatform-${i}`, button));
        return {
          dispose: () => buttons.forEach(b => b.dispose()),
          isDisposed: false
        } as any;
      }
    });

    if (statusBar) {
      statusBar.registerStatusItem('mlplatform:running', {
        item: new RunningItem(state),
        align: 'left',
        rank: 100
      });
    }

    const start = (seconds: number) => {
      state.setInterval(seconds);
      void state.refresh();
    };
    if (settings) {
      settings
        .load(PLUGIN_ID)
        .then(s => {
          const read = () => start(Number(s.get('refreshInterval').composite) || 0);
          s.changed.connect(read);
          read();
        })
        .catch(() => start(5));
    } else {
      start(5);
    }
  }
};

export default plugin;
