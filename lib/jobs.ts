/**
 * The job request (POST /api/jobs): validated with zod; a bad request is a 400 that names the field.
 * A valid request becomes a JobSpec: the orchestration's whole input (small, whatever the job size).
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { LakeInferError } from './errors';
import { InferParamsSchema, zodPath, type InferParams } from './model/spec';
import { jobPrefix } from './storage';

const container = z
  .string()
  .regex(/^(?!-)(?!.*--)[a-z0-9-]{3,63}(?<!-)$/, 'must be a container name: 3-63 lowercase letters, digits and single hyphens');
const blobPrefix = z
  .string()
  .max(512)
  .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), "must not contain '.' or '..' segments")
  .default('');

export const JobRequestSchema = z
  .object({
    jobId: z.string().regex(/^[A-Za-z0-9_-]{1,100}$/, 'must be 1-100 characters of A-Z a-z 0-9 - _').optional(),
    input: z
      .object({
        container,
        prefix: blobPrefix,
        extensions: z
          .array(z.string().regex(/^\.[A-Za-z0-9]{1,10}$/, "must look like '.jpg'"))
          .min(1)
          .max(32)
          .default(['.jpg', '.jpeg', '.png']),
        maxItems: z.number().int().min(1).max(100_000_000).optional(),
      })
      .strict(),
    output: z
      .object({
        container,
        prefix: blobPrefix,
        overlays: z.boolean().default(false),
      })
      .strict(),
    model: z.object({ name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, 'must be 1-100 characters of A-Z a-z 0-9 . _ -').refine((n) => !n.includes('..'), "must not contain '..'") }).strict(),
    partitionSize: z.number().int().min(1).max(10_000).default(64),
    /** Partitions processed at once (a wave); bounds the load on storage and instances. */
    maxParallelPartitions: z.number().int().min(1).max(1000).default(32),
    toleratedFailurePercent: z.number().min(0).max(100).default(1),
    skipExisting: z.boolean().default(true),
    params: InferParamsSchema.default({}),
  })
  .strict();

export type JobRequest = z.input<typeof JobRequestSchema>;

export interface JobSpec {
  jobId: string;
  /** `<output prefix><jobId>/`: every output of the job lives under it. */
  jobPrefix: string;
  input: { container: string; prefix: string; extensions: string[]; maxItems?: number };
  output: { container: string; prefix: string; overlays: boolean };
  model: { name: string };
  partitionSize: number;
  maxParallelPartitions: number;
  toleratedFailurePercent: number;
  skipExisting: boolean;
  params: InferParams;
  /** When the job was first submitted (set by the HTTP trigger, not the orchestrator). */
  submittedAt: string;
}

/** Validates a request body; throws InvalidRequest whose target is the offending field. */
export function parseJobRequest(body: unknown, now: Date = new Date(), newId: () => string = randomUUID): JobSpec {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new LakeInferError('InvalidRequest', 'request body must be a JSON object', { target: '(body)' });
  }
  const r = JobRequestSchema.safeParse(body);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    let field = zodPath(issue.path);
    if (issue.code === 'unrecognized_keys') field = [field, issue.keys[0]].filter(Boolean).join('.');
    throw new LakeInferError('InvalidRequest', `field '${field || '(body)'}' ${issue.message.replace(/^Invalid input: /, '')}`, { target: field || '(body)' });
  }
  const req = r.data;
  const jobId = req.jobId ?? newId();
  return {
    jobId,
    jobPrefix: jobPrefix(req.output.prefix, jobId),
    input: { container: req.input.container, prefix: req.input.prefix, extensions: req.input.extensions.map((e) => e.toLowerCase()), ...(req.input.maxItems ? { maxItems: req.input.maxItems } : {}) },
    output: req.output,
    model: req.model,
    partitionSize: req.partitionSize,
    maxParallelPartitions: req.maxParallelPartitions,
    toleratedFailurePercent: req.toleratedFailurePercent,
    skipExisting: req.skipExisting,
    params: req.params,
    submittedAt: now.toISOString(),
  };
}
