/** What the sidebar, status bar and notifications show: polled from the platform. */
import { ISignal, Signal } from '@lumino/signaling';

import { ApiError, Deployment, MLPlatformClient, ModelSummary, Run } from './api';
import { activeRuns, newlyFinished } from './forms';

export class PlatformState {
  models: ModelSummary[] = [];
  runs: Run[] = [];
  deployments: Deployment[] = [];
  error: string | null = null;
  private statuses = new Map<string, string>();
  private timer: number | undefined;
  private refreshing: Promise<void> | null = null;
  private readonly _changed = new Signal<this, void>(this);
  private readonly _runFinished = new Signal<this, Run>(this);

  constructor(readonly client: MLPlatformClient) {}

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** A run that was pending or running is now finished (emitted once per run). */
  get runFinished(): ISignal<this, Run> {
    return this._runFinished;
  }

  get runningCount(): number {
    return activeRuns(this.runs).length;
  }

  /** Poll every `seconds` (0 stops polling). */
  setInterval(seconds: number): void {
    window.clearInterval(this.timer);
    this.timer = undefined;
    if (seconds > 0) {
      this.timer = window.setInterval(() => void this.refresh(), seconds * 1000);
    }
  }

  refresh(): Promise<void> {
    if (!this.refreshing) {
      this.refreshing = this.load().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  private async load(): Promise<void> {
    try {
      const [models, runs, deployments] = await Promise.all([
        this.client.models(),
        this.client.runs(),
        this.client.deployments()
      ]);
      const finished = this.statuses.size ? newlyFinished(this.statuses, runs.items) : [];
      this.models = models.items;
      this.runs = runs.items;
      this.deployments = deployments.items;
      this.statuses = new Map(runs.items.map(r => [r.id, r.status]));
      this.error = null;
      finished.forEach(run => this._runFinished.emit(run));
    } catch (error) {
      this.error = error instanceof ApiError ? error.message : String(error);
    }
    this._changed.emit();
  }

  dispose(): void {
    this.setInterval(0);
    Signal.clearData(this);
  }
}
