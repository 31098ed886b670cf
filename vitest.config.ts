import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    // A temp folder per test file, checked for leftovers (keys) when the file ends.
    setupFiles: ["test/temp-guard.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Tests start loopback servers and child processes; keep parallelism modest on 2 cores.
    maxWorkers: 2,
  },
});
