// The progress reporter's decisions (cli/progress.ts), driven by a made-up clock: what a terminal
// and a log file get for the same run, without timers.
import { describe, expect, it } from "vitest";
import { LOG_LINE_INTERVAL_MS, progressReporter, progressWrite, TTY_REDRAW_INTERVAL_MS, type ProgressMark } from "../../../cli/progress.js";

const format = (done: number, total: number) => `processed ${done}/${total} PCRs`;
const CLEAR = "\x1b[K";

/** Feeds (time, done) updates of `total` items through progressWrite, then an end; returns what was written. */
function run(o: { isTTY: boolean; total: number; updates: readonly [at: number, done: number][]; endAt?: number }): string[] {
  let last: ProgressMark = { at: 0, finished: false };
  const out: string[] = [];
  const feed = (now: number, done: number, end: boolean) => {
    const w = progressWrite({ done, total: o.total, now, last, isTTY: o.isTTY, end, format });
    if (w === undefined) return;
    last = w.mark;
    out.push(w.text);
  };
  let done = 0;
  for (const [at, d] of o.updates) feed(at, (done = d), false);
  feed(o.endAt ?? o.updates.at(-1)?.[0] ?? 0, done, true);
  return out;
}

/** One update per item, `stepMs` apart from the start. */
const evenly = (total: number, stepMs: number): [number, number][] => Array.from({ length: total }, (_, i) => [(i + 1) * stepMs, i + 1]);

describe("progressWrite off a terminal (a log file, a pipe)", () => {
  it("writes only the final line for a run shorter than the interval", () => {
    expect(run({ isTTY: false, total: 1000, updates: evenly(1000, 1) })).toEqual(["processed 1000/1000 PCRs\n"]);
  });

  it("writes a plain line at most every LOG_LINE_INTERVAL_MS, then the final line once", () => {
    // 30 items, one a second: lines at 5 s, 10 s, … (each at least the interval after the last), then 30/30.
    const out = run({ isTTY: false, total: 30, updates: evenly(30, 1000) });
    expect(LOG_LINE_INTERVAL_MS).toBe(5000);
    expect(out).toEqual([5, 10, 15, 20, 25].map((n) => `processed ${n}/30 PCRs\n`).concat("processed 30/30 PCRs\n"));
    for (const line of out) expect(line).not.toMatch(/[\r\x1b]/);
  });

  it("counts the interval from the last line written, not from the last update", () => {
    // Updates at 4.9 s (too early), 9.8 s (written: 9.8 s since the start), 14.7 s (too early: 4.9 s since), 19.6 s.
    const out = run({ isTTY: false, total: 10, updates: [[4900, 1], [9800, 2], [14700, 3], [19600, 4]], endAt: 19700 });
    expect(out).toEqual(["processed 2/10 PCRs\n", "processed 4/10 PCRs\n", "processed 4/10 PCRs\n"]);
  });
});

describe("progressWrite on a terminal", () => {
  it("redraws one line (carriage return, clear to end of line) at most every TTY_REDRAW_INTERVAL_MS, and ends it with the final state", () => {
    expect(TTY_REDRAW_INTERVAL_MS).toBe(100);
    // 1000 items, one every 3 ms (3 s): a redraw every 34th item at most, not 1000.
    const out = run({ isTTY: true, total: 1000, updates: evenly(1000, 3) });
    expect(out.length).toBeLessThanOrEqual(3000 / TTY_REDRAW_INTERVAL_MS + 1);
    for (const frame of out.slice(0, -1)) expect(frame).toMatch(new RegExp(`^\\rprocessed \\d+/1000 PCRs\\x1b\\[K$`));
    expect(out.at(-1)).toBe(`\rprocessed 1000/1000 PCRs${CLEAR}\n`);
    expect(out.filter((f) => f.includes("\n"))).toHaveLength(1);
  });

  it("does not redraw an unchanged count", () => {
    const out = run({ isTTY: true, total: 5, updates: [[200, 1], [400, 1], [600, 1], [800, 2]], endAt: 900 });
    expect(out).toEqual([`\rprocessed 1/5 PCRs${CLEAR}`, `\rprocessed 2/5 PCRs${CLEAR}`, `\rprocessed 2/5 PCRs${CLEAR}\n`]);
  });
});

describe("the final line", () => {
  for (const isTTY of [false, true]) {
    it(`is written exactly once (${isTTY ? "terminal" : "log"}), on reaching the total or at the end, whichever comes first`, () => {
      const reached = run({ isTTY, total: 3, updates: [[1, 1], [2, 2], [3, 3], [4, 3]], endAt: 10_000 });
      expect(reached.filter((t) => t.includes("3/3"))).toHaveLength(1);
      // Stopped early (a timeout): the state where it stopped is the final line.
      const stopped = run({ isTTY, total: 3, updates: [[1, 1]], endAt: 2 });
      expect(stopped).toEqual([isTTY ? `\rprocessed 1/3 PCRs${CLEAR}\n` : "processed 1/3 PCRs\n"]);
    });

    it(`is written for a total of 0, once (${isTTY ? "terminal" : "log"})`, () => {
      expect(run({ isTTY, total: 0, updates: [[0, 0]], endAt: 1 })).toEqual([isTTY ? `\rprocessed 0/0 PCRs${CLEAR}\n` : "processed 0/0 PCRs\n"]);
      expect(run({ isTTY, total: 0, updates: [] })).toEqual([isTTY ? `\rprocessed 0/0 PCRs${CLEAR}\n` : "processed 0/0 PCRs\n"]);
    });
  }

  it("is followed by nothing, whatever comes after it", () => {
    const last: ProgressMark = { at: 0, done: 3, finished: true };
    for (const isTTY of [false, true]) {
      expect(progressWrite({ done: 3, total: 3, now: 60_000, last, isTTY, end: true, format })).toBeUndefined();
      expect(progressWrite({ done: 4, total: 3, now: 60_000, last, isTTY, format })).toBeUndefined();
    }
  });
});

describe("progressReporter (the I/O wrapper)", () => {
  const reporter = (isTTY: boolean | undefined) => {
    let now = 0;
    const written: string[] = [];
    const out = isTTY === undefined ? { write: (t: string) => written.push(t) } : { isTTY, write: (t: string) => written.push(t) };
    const r = progressReporter({ out, format, now: () => now });
    return { r, written, tick: (ms: number) => (now += ms) };
  };

  it("takes a stream without isTTY (a pipe's) as not a terminal, and finish() after the total writes nothing more", () => {
    const { r, written, tick } = reporter(undefined);
    for (let i = 1; i <= 4; i++) {
      tick(10);
      r.update(i, 4);
    }
    r.finish();
    r.finish();
    expect(written).toEqual(["processed 4/4 PCRs\n"]);
  });

  it("finish() without any update writes 0/0; with one, the last update's state", () => {
    const none = reporter(true);
    none.r.finish();
    expect(none.written).toEqual([`\rprocessed 0/0 PCRs${CLEAR}\n`]);
    const some = reporter(false);
    some.r.update(0, 7);
    some.tick(6000);
    some.r.update(2, 7);
    some.r.finish();
    expect(some.written).toEqual(["processed 2/7 PCRs\n", "processed 2/7 PCRs\n"]);
  });
});
