/**
 * Progress of a long loop on stderr (issue 14). On a terminal it is one line redrawn in place;
 * anywhere else (a log file, a pipe) each redraw would be a line of its own in the file, so there
 * it is a plain line now and then. What to write and when is `progressWrite`, a pure function of
 * the count, the clock and the last write, so it is tested without timers or a terminal;
 * `progressReporter` only keeps that state and writes.
 */

/** A terminal is redrawn at most this often: about ten a second reads as live, and a run over thousands of items does not flood a slow terminal (or an ssh link). */
export const TTY_REDRAW_INTERVAL_MS = 100;

/**
 * Off a terminal, an intermediate line at most this often (counted from the start): a long run
 * leaves a heartbeat in its log, and a run shorter than this writes only its final line.
 */
export const LOG_LINE_INTERVAL_MS = 5_000;

/** ECMA-48 EL (erase in line, to its end): after a carriage return and a shorter redraw, no tail of the longer line stays. */
const CLEAR_TO_END_OF_LINE = "\x1b[K";

/** What the next decision needs to know of the writes so far. */
export interface ProgressMark {
  /** When the last line was written, or, before the first, when the reporter started. */
  at: number;
  /** The `done` last written; undefined before the first write. */
  done?: number;
  /** The final line has been written: nothing more will be. */
  finished: boolean;
}

export interface ProgressInput {
  done: number;
  total: number;
  /** Milliseconds on any monotonic clock, the same one as `last.at`. */
  now: number;
  last: ProgressMark;
  isTTY: boolean;
  /** The caller stops here, done or not (a timeout, an error): write the final state now. */
  end?: boolean;
  /** The line's text, without line ends or control characters. */
  format: (done: number, total: number) => string;
}

/** The text to write and the mark to keep; undefined when nothing is to be written now. */
export interface ProgressWrite {
  text: string;
  mark: ProgressMark;
}

/**
 * The final state (done >= total, or `end`) is always written, and only once; any other state is
 * written when it changed and the interval for the kind of output has passed since the last write.
 * On a terminal a line is carriage return, text, clear to end of line, and the final one ends the
 * line; elsewhere every line is a plain line.
 */
export function progressWrite(p: ProgressInput): ProgressWrite | undefined {
  if (p.last.finished) return undefined;
  const final = p.end === true || p.done >= p.total;
  if (!final) {
    if (p.done === p.last.done) return undefined;
    if (p.now - p.last.at < (p.isTTY ? TTY_REDRAW_INTERVAL_MS : LOG_LINE_INTERVAL_MS)) return undefined;
  }
  const line = p.format(p.done, p.total);
  const text = p.isTTY ? `\r${line}${CLEAR_TO_END_OF_LINE}${final ? "\n" : ""}` : `${line}\n`;
  return { text, mark: { at: p.now, done: p.done, finished: final } };
}

/** Where progress goes: process.stderr, or a test's stand-in. */
export interface ProgressOutput {
  write(text: string): unknown;
  isTTY?: boolean;
}

export interface ProgressReporter {
  /** `done` of `total` items so far; writes the final line when done >= total. */
  update(done: number, total: number): void;
  /** Writes the final state of the last update (0/0 without one), unless it was written already. */
  finish(): void;
}

export function progressReporter(o: {
  out: ProgressOutput;
  format: (done: number, total: number) => string;
  /** Default performance.now(): monotonic, so a clock step does not stall or rush the lines. */
  now?: () => number;
}): ProgressReporter {
  const now = o.now ?? (() => performance.now());
  // Read once: whether stderr is a terminal does not change during a run.
  const isTTY = o.out.isTTY === true;
  let last: ProgressMark = { at: now(), finished: false };
  let latest = { done: 0, total: 0 };
  const step = (end: boolean) => {
    const w = progressWrite({ ...latest, now: now(), last, isTTY, end, format: o.format });
    if (w === undefined) return;
    last = w.mark;
    o.out.write(w.text);
  };
  return {
    update(done, total) {
      latest = { done, total };
      step(false);
    },
    finish() {
      step(true);
    },
  };
}
