// Builds the bundles once before the tests, so integration tests exercise exactly what ships.
import { execFileSync } from "node:child_process";

export default function setup(): void {
  execFileSync(process.execPath, ["esbuild.config.mjs"], { stdio: "inherit" });
}
