/** Tools from Debian some tests use where installed (.ci/run installs them); tests skip cleanly without. */
import { spawnSync } from "node:child_process";

/** kubectl (with its kustomize): `kubectl version --client` answers. */
export const hasKubectl = spawnSync("kubectl", ["version", "--client"], { stdio: "ignore", timeout: 10_000 }).status === 0;
