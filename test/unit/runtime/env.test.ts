// shared/runtime/env.ts: a function's environment, each variable checked at start with its name
// in the error (a typo in a manifest is a clear configuration error, not a silent default).
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError } from "../../../shared/errors.js";
import { envBool, envChoice, envInt } from "../../../shared/runtime/env.js";
import { LOG_LEVELS } from "../../../shared/runtime/log.js";

const NAME = "PODCERT_TEST_ENV";
afterEach(() => {
  delete process.env[NAME];
});
const withValue = (v: string | undefined) => {
  if (v === undefined) delete process.env[NAME];
  else process.env[NAME] = v;
};

describe("envChoice (LOG_LEVEL)", () => {
  it.each(LOG_LEVELS)("takes %s", (level) => {
    withValue(level);
    expect(envChoice(NAME, LOG_LEVELS, "info")).toBe(level);
  });

  it.each([undefined, ""])("falls back when unset or empty (%j)", (v) => {
    withValue(v);
    expect(envChoice(NAME, LOG_LEVELS, "warn")).toBe("warn");
  });

  it.each(["verbose", "INFO", "warning", " info"])("refuses %j, naming the variable and every allowed value", (v) => {
    withValue(v);
    expect(() => envChoice(NAME, LOG_LEVELS, "info")).toThrow(ConfigError);
    expect(() => envChoice(NAME, LOG_LEVELS, "info")).toThrow(
      `environment variable ${NAME} must be one of debug, info, warn, error, got ${JSON.stringify(v)}`,
    );
  });
});

describe("envInt and envBool", () => {
  it("check their range and form, naming the variable", () => {
    withValue("70000");
    expect(() => envInt(NAME, 1, { min: 0, max: 65535 })).toThrow(new RegExp(`${NAME} must be an integer from 0 to 65535`));
    withValue("12");
    expect(envInt(NAME, 1, { min: 0, max: 65535 })).toBe(12);
    withValue("yes");
    expect(() => envBool(NAME, true)).toThrow(new RegExp(`${NAME} must be true or false`));
    withValue("0");
    expect(envBool(NAME, true)).toBe(false);
  });
});
