import { defineConfig, type TestProjectInlineConfiguration } from "vitest/config";

/**
 * The test matrix over the emulated Kubernetes control planes (issue 13; local-cluster/
 * kubernetes-versions.ts): every test runs at the default, 1.36, and every test that talks to the
 * embedded API server (directly, through the local run, the bundles or the CLI) runs again at 1.35
 * and 1.37. PODCERT_KUBERNETES_VERSION reaches the API servers they start, in-process and in child
 * processes alike; tests whose expectations follow the version read it through
 * test/helpers/kubernetes.ts. Tests that touch no API server (pure decisions, manifests) would
 * only repeat themselves, so they run once.
 */
const API_SERVER_TESTS = ["test/integration/**/*.test.ts", "test/unit/kube/**/*.test.ts", "test/unit/local-cluster/**/*.test.ts"];

const atVersion = (version: string, include: string[]): TestProjectInlineConfiguration => ({
  extends: true,
  test: { name: `kubernetes-${version}`, include, env: { PODCERT_KUBERNETES_VERSION: version } },
});

export default defineConfig({
  test: {
    globalSetup: ["test/global-setup.ts"],
    // A temp folder per test file, checked for leftovers (keys) when the file ends.
    setupFiles: ["test/temp-guard.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Tests start loopback servers and child processes; keep parallelism modest on 2 cores.
    maxWorkers: 2,
    projects: [
      atVersion("1.36", ["test/**/*.test.ts"]),
      atVersion("1.35", API_SERVER_TESTS),
      atVersion("1.37", API_SERVER_TESTS),
    ],
  },
});
