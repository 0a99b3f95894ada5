/**
 * The inferenceJob orchestration and its activities, registered with the v4 programming model.
 * Logic lives in lib/orchestrator.ts (deterministic) and lib/activities.ts (I/O).
 */
import * as df from 'durable-functions';
import type { ActivityHandler } from 'durable-functions';
import { defaultActivities } from '../lib/activities';
import { FINALIZE_ACTIVITY, INFER_ACTIVITY, inferenceJobOrchestrator, ORCHESTRATOR, PLAN_ACTIVITY } from '../lib/orchestrator';

df.app.orchestration(ORCHESTRATOR, inferenceJobOrchestrator);

const planJob: ActivityHandler = (input, context) => {
  context.log(`planning job ${(input as { jobId: string }).jobId}`);
  return defaultActivities().planJob(input as Parameters<ReturnType<typeof defaultActivities>['planJob']>[0]);
};
const inferPartition: ActivityHandler = (input) => defaultActivities().inferPartition(input as Parameters<ReturnType<typeof defaultActivities>['inferPartition']>[0]);
const finalizeJob: ActivityHandler = (input) => defaultActivities().finalizeJob(input as Parameters<ReturnType<typeof defaultActivities>['finalizeJob']>[0]);

df.app.activity(PLAN_ACTIVITY, { handler: planJob });
df.app.activity(INFER_ACTIVITY, { handler: inferPartition });
df.app.activity(FINALIZE_ACTIVITY, { handler: finalizeJob });
