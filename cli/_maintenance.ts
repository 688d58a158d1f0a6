/**
 * The daemon's scheduled scrub, and the repair it starts when the scrub finds
 * chunks short of copies: each logged to `DIR/jobs.log` as a run of its own
 * (kinds `scrub` and `repair`), as sync jobs are.
 *
 * @module
 */
import { Cron, CronPattern } from "croner";
import { repair, type RepairResult, scrub, type ScrubReport } from "../store/repair.ts";
import { Store } from "../store/store.ts";
import { logRun, type RepairRecord, type RunRecord, type ScrubRecord } from "../sync/runs.ts";
import { UsageError } from "./_util.ts";

/** The daemon's scrub schedule when `--scrub` is not given: Sundays at 03:00 (local time). */
export const DEFAULT_SCRUB = "0 3 * * 0";

/**
 * Parses `--scrub`: a cron pattern (5 fields, or 6 with seconds first), or
 * `off` (undefined). A bad pattern is a UsageError.
 */
export function scrubSchedule(v: string): string | undefined {
  if (v.trim().toLowerCase() === "off") return undefined;
  try {
    new CronPattern(v);
  } catch (e) {
    const reason = (e as Error).message.replace(/^CronPattern:\s*/, "");
    throw new UsageError(
      `--scrub '${v}': not a cron pattern (${reason}); e.g. "0 3 * * 0" (Sundays 03:00) or off`,
    );
  }
  // A pattern that never fires (e.g. 30 February) would leave the daemon idle for good.
  const next = new Cron(v, { paused: true }).nextRun();
  if (!next) throw new UsageError(`--scrub '${v}': the pattern never fires`);
  return v;
}

/** The `jobs.log` form of a scrub report. */
export function scrubRecord(r: ScrubReport): ScrubRecord {
  return {
    nodes: r.nodes.map((n) => ({
      node: n.node,
      checked: n.checked,
      damaged: n.damaged.length,
      ...(n.error ? { error: n.error } : {}),
    })),
    referenced: r.referenced,
    missing: r.missing.length,
    damaged: r.missing.filter((p) => p.damaged.length).length,
    lost: r.lost.length,
    over: r.over.length,
    problems: [...r.missing, ...r.lost].slice(0, 20).map((p) => ({
      id: p.id,
      healthy: p.healthy.length,
      want: p.want,
      damaged: p.damaged,
    })),
  };
}

/** Whether a scrub found anything wrong (or could not verify a Pi). */
export function scrubFoundProblems(r: ScrubReport): boolean {
  return r.missing.length + r.lost.length > 0 ||
    r.nodes.some((n) => n.error || n.damaged.length);
}

/** The `jobs.log` form of a repair's result. */
export function repairRecord(r: RepairResult): RepairRecord {
  return {
    deleted: r.deleted,
    copied: r.copied,
    failed: r.failed.length,
    errors: r.failed.slice(0, 20),
  };
}

/** One line saying what a logged scrub or repair found or did (for `pifs jobs` and the daemon). */
export function maintenanceText(r: RunRecord): string {
  if (r.scrub) {
    const s = r.scrub;
    const checked = s.nodes.reduce((a, n) => a + n.checked, 0);
    const down = s.nodes.filter((n) => n.error).map((n) => n.node);
    return `${checked} chunks verified on ${s.nodes.length - down.length} Pis` +
      (down.length ? ` (not scrubbed: node ${down.join(", ")})` : "") +
      `; ${s.referenced} needed: ${s.missing} short of copies (${s.damaged} damaged), ` +
      `${s.lost} lost, ${s.over} over`;
  }
  if (r.repair) {
    const p = r.repair;
    return `${p.deleted} damaged copies deleted, ${p.copied} copies made, ` +
      `${p.failed} chunks not repaired` +
      (p.errors.length ? ` (${p.errors[0].id.slice(0, 16)}: ${p.errors[0].error})` : "");
  }
  return r.error ?? "";
}

/** Options of {@linkcode runScrub}. */
export interface ScrubRunOptions {
  /** Repair right away what the scrub finds short of copies (default true). */
  repair?: boolean;
  /** Wait this long for another command's hold on the cluster (default 10 minutes). */
  busyWaitMs?: number;
  /** Progress and result messages. */
  log: (msg: string) => void;
  /** Each record as it is logged (the daemon's `--json`). */
  onRecord?: (r: RunRecord) => void;
}

/**
 * Scrubs the cluster in `dir` and logs the scrub to `DIR/jobs.log`; when it
 * found chunks short of copies and `repair` is on, repairs them from that
 * same scrub (the store stays open in between, so nothing else runs) and
 * logs the repair too. The caller holds the sync lock. Returns the records
 * logged (the scrub's, then the repair's if one ran).
 */
export async function runScrub(dir: string, opts: ScrubRunOptions): Promise<RunRecord[]> {
  const records: RunRecord[] = [];
  const log = async (r: RunRecord) => {
    await logRun(dir, r);
    opts.onRecord?.(r);
    records.push(r);
    opts.log(
      `${r.kind} ${r.outcome}: ${r.outcome === "failed" ? r.error : maintenanceText(r)}`,
    );
  };
  const base = (kind: "scrub" | "repair", start: string) => ({
    kind,
    job: kind,
    spec: "",
    start,
    end: new Date().toISOString(),
    trigger: kind === "scrub" ? "schedule" as const : "scrub" as const,
  });
  let start = new Date().toISOString();
  let store: Store;
  try {
    store = await Store.open(dir, { log: opts.log, busyWaitMs: opts.busyWaitMs ?? 600_000 });
  } catch (e) {
    await log({ ...base("scrub", start), outcome: "failed", error: (e as Error).message });
    return records;
  }
  try {
    let report: ScrubReport;
    try {
      report = await scrub(store, { log: opts.log });
    } catch (e) {
      await log({ ...base("scrub", start), outcome: "failed", error: (e as Error).message });
      return records;
    }
    await log({
      ...base("scrub", start),
      outcome: scrubFoundProblems(report) ? "partial" : "ok",
      scrub: scrubRecord(report),
    });
    if (report.missing.length === 0) return records;
    if (opts.repair === false) {
      opts.log(
        `scrub: ${report.missing.length} chunks short of copies; not repaired (--no-repair): ` +
          "run pifs repair",
      );
      return records;
    }
    start = new Date().toISOString();
    opts.log(`repair: ${report.missing.length} chunks short of copies`);
    try {
      const r = await repair(store, {
        report,
        log: opts.log,
        onChunk: (d, t) => {
          if (d === t || d % 50 === 0) opts.log(`repaired ${d} of ${t} chunks`);
        },
      });
      await log({
        ...base("repair", start),
        outcome: r.failed.length ? "partial" : "ok",
        repair: repairRecord(r),
      });
    } catch (e) {
      await log({ ...base("repair", start), outcome: "failed", error: (e as Error).message });
    }
    return records;
  } finally {
    await store.close();
  }
}
