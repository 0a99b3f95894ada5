/**
 * The inferenceJob orchestration and its activities, registered with the v4 programming model.
 * Logic lives in lib/orchestration/orchestrator.ts (deterministic) and lib/orchestration/activities.ts (I/O).
 */
import * as df from 'durable-functions';
import type { ActivityHandler } from 'durable-functions';
import { defaultActivities, type PartitionInput } from '../lib/orchestration/activities';
import type { FinalizeInput } from '../lib/fanin/finalize';
import type { JobSpec } from '../lib/job/request';
import type { CollectInput } from '../lib/continuous/collect';
import { COLLECT_ACTIVITY, FINALIZE_ACTIVITY, INFER_ACTIVITY, inferenceJobOrchestrator, ORCHESTRATOR, PLAN_ACTIVITY, PLAN_MORE_ACTIVITY } from '../lib/orchestration/orchestrator';

df.app.orchestration(ORCHESTRATOR, inferenceJobOrchestrator);

const planJob: ActivityHandler = (input, context) => {
  context.log(`planning job ${(input as JobSpec).jobId}`);
  return defaultActivities().planJob(input as JobSpec);
};
const inferPartition: ActivityHandler = (input) => defaultActivities().inferPartition(input as PartitionInput);
const finalizeJob: ActivityHandler = (input, context) => {
  context.log(`finalizing job ${(input as FinalizeInput).job.jobId}`);
  return defaultActivities().finalizeJob(input as FinalizeInput);
};

df.app.activity(PLAN_ACTIVITY, { handler: planJob });
df.app.activity(PLAN_MORE_ACTIVITY, { handler: (input) => defaultActivities().planMore(input as JobSpec) });
df.app.activity(INFER_ACTIVITY, { handler: inferPartition });
df.app.activity(FINALIZE_ACTIVITY, { handler: finalizeJob });
df.app.activity(COLLECT_ACTIVITY, { handler: (input) => defaultActivities().collectArrivals(input as CollectInput) });
