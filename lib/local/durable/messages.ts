/**
 * The history events the engine writes for scheduled and completed tasks, each measured as the
 * queue message Azure would carry: over 45 KB it is counted and logged (a large-message blob on
 * Azure, one more storage round trip each way).
 */
import { LARGE_MESSAGE_BYTES, type EngineStats, type InstanceRecord, type Work } from './records';
import { EV, type HistoryEvent, type NewWork } from './replay';

export type Sizer = <T extends Record<string, unknown>>(message: T, field: string, what: string) => T;

export function sizer(stats: EngineStats, log: (message: string) => void): Sizer {
  return (message, field, what) => {
    const bytes = Buffer.byteLength(JSON.stringify(message), 'utf8');
    if (bytes > LARGE_MESSAGE_BYTES) {
      stats.largeMessages++;
      log(`large message: ${what} is ${(bytes / 1024).toFixed(1)} KB (over 45 KB: stored as a blob on Azure, one more storage round trip each way); keep ${field} small`);
    }
    return message;
  };
}

export function scheduledEvent(sized: Sizer, rec: InstanceRecord, w: NewWork, now: string): HistoryEvent {
  if (w.kind === 'timer') return { EventType: EV.TimerCreated, EventId: w.id, IsPlayed: false, Timestamp: now, FireAt: w.fireAt };
  return sized({ EventType: EV.TaskScheduled, EventId: w.id, IsPlayed: false, Timestamp: now, Name: w.name, Input: JSON.stringify(w.input ?? null) }, 'Input', `input of ${w.name} (task ${w.id} of ${rec.instanceId})`);
}

export function completedEvent(sized: Sizer, rec: InstanceRecord, w: Work, result: unknown): HistoryEvent {
  return sized({ EventType: EV.TaskCompleted, EventId: -1, IsPlayed: false, Timestamp: new Date().toISOString(), TaskScheduledId: w.id, Result: JSON.stringify(result ?? null) }, 'Result', `result of ${w.name} (task ${w.id} of ${rec.instanceId})`);
}
