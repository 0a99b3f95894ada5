/**
 * What the job API needs of the Durable client: the extension's client on Azure (functions/jobs.ts),
 * the local engine locally.
 */
export type RuntimeStatus = 'Running' | 'Pending' | 'Completed' | 'Failed' | 'Terminated' | 'ContinuedAsNew' | 'Canceled' | 'Suspended' | 'Unknown';

export interface InstanceStatus {
  instanceId: string;
  runtimeStatus: RuntimeStatus;
  input?: unknown;
  output?: unknown;
  customStatus?: unknown;
  createdTime?: string;
  lastUpdatedTime?: string;
}

export interface JobClient {
  start(orchestrator: string, instanceId: string, input: unknown): Promise<void>;
  status(instanceId: string): Promise<InstanceStatus | undefined>;
  /** Asks for the instance to end; it ends when the Durable runtime processes the request. */
  terminate(instanceId: string, reason: string): Promise<void>;
  /** Sends the instance an event (raiseEvent); it takes it when the Durable runtime delivers it. */
  raiseEvent(instanceId: string, name: string, data: unknown): Promise<unknown>;
  /** Deletes the history of a finished instance; false when there was none. */
  purge(instanceId: string): Promise<boolean>;
  /** The instances matching a filter (their inputs left out): the Durable client's instance query. */
  list(filter: InstanceFilter): Promise<InstanceStatus[]>;
}

export interface InstanceFilter {
  runtimeStatus?: RuntimeStatus[];
  createdTimeFrom?: Date;
  createdTimeTo?: Date;
}

