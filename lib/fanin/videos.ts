/**
 * Annotated videos at fan-in: each video's segments (one per piece that took its frames, encoded
 * there) joined in frame order into `overlays/<video>.mp4`, without encoding again. A segment that
 * is gone or changed since its piece recorded it leaves that video without its annotated video (and
 * says so); it never fails the job: the frames' results and overlays are the job's outputs.
 */
import { createHash } from 'node:crypto';
import type { ContainerClient } from '@azure/storage-blob';
import { joinSegments } from '../video/annotate';
import type { AnnotatedSegment } from '../partition/parts';
import { outputBlobName, readBlob, writeBlob } from '../storage';

export interface AnnotatedVideos {
  /** Video blob name -> its annotated video, relative to the job folder. */
  videos: Record<string, string>;
  /** Videos left without one, and why. */
  skipped: { video: string; reason: string }[];
}

export async function joinAnnotatedVideos(output: ContainerClient, jobPrefix: string, segments: readonly AnnotatedSegment[]): Promise<AnnotatedVideos> {
  const byVideo = new Map<string, AnnotatedSegment[]>();
  for (const s of segments) byVideo.set(s.video, [...(byVideo.get(s.video) ?? []), s]);
  const out: AnnotatedVideos = { videos: {}, skipped: [] };
  for (const [video, list] of byVideo) {
    const ordered = [...list].sort((a, b) => a.first - b.first);
    const parts: Buffer[] = [];
    let problem: string | undefined;
    for (const s of ordered) {
      const got = await readBlob(output, s.name);
      if (!got) problem = `its segment from frame ${s.first} is gone`;
      else if (s.md5 && createHash('md5').update(got.data).digest('base64') !== s.md5) problem = `its segment from frame ${s.first} changed since it was written`;
      if (problem) break;
      parts.push(got!.data);
    }
    if (problem) {
      out.skipped.push({ video, reason: problem });
      continue;
    }
    const name = outputBlobName(jobPrefix, 'overlays', video, '.mp4');
    await writeBlob(output, name, await joinSegments(parts, ordered.map((s) => s.time ?? Number.NaN)));
    out.videos[video] = name.slice(jobPrefix.length);
  }
  return out;
}
