// The Dockerfile builds one image per function from its bundle in dist/, on Node 22, as a
// non-root user, with nothing but the bundle; and the bundle really needs nothing else.
import { execFile, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { isKeyedStep, STEPS } from "../../shared/steps.js";
import { find, loadDir, ROOT, serviceName } from "./manifests.js";

interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile instructions, comments dropped and continuation lines joined. */
function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  const logical = text.replace(/\\\r?\n/g, " ").split(/\r?\n/);
  for (const line of logical) {
    const t = line.trim();
    if (t === "" || t.startsWith("#")) continue;
    const m = /^(\S+)\s*(.*)$/.exec(t)!;
    out.push({ op: m[1]!.toUpperCase(), args: m[2]!.trim() });
  }
  return out;
}

/** What is wrong with a Dockerfile for podcert's functions. */
function dockerfileProblems(text: string): string[] {
  const problems: string[] = [];
  const ins = instructions(text);
  const lastFrom = ins.map((i) => i.op).lastIndexOf("FROM");
  if (lastFrom < 0) return ["no FROM"];
  const final = ins.slice(lastFrom);
  const base = final[0]!.args.split(/\s+/)[0]!;
  if (!/(^|\/)(node:22|nodejs22)/.test(base)) problems.push(`base image ${base} is not Node.js 22`);
  if (!final.some((i) => i.op === "ARG" && /^FUNCTION(=|$)/.test(i.args))) problems.push("ARG FUNCTION is not declared in the final stage");
  const copies = final.filter((i) => i.op === "COPY" || i.op === "ADD");
  if (!copies.some((i) => i.op === "COPY" && /^dist\/\$\{?FUNCTION\}?\.mjs\s/.test(i.args))) problems.push("does not COPY dist/${FUNCTION}.mjs");
  for (const c of copies) {
    const sources = c.args.split(/\s+/).filter((a) => !a.startsWith("--")).slice(0, -1);
    for (const s of sources) if (!s.startsWith("dist/")) problems.push(`${c.op} ${s}: only the bundle from dist/ goes in`);
  }
  if (ins.some((i) => i.op === "RUN" && /\b(npm|yarn|pnpm)\b/.test(i.args)) || /node_modules/.test(ins.map((i) => i.args).join("\n"))) {
    problems.push("installs packages or copies node_modules: the bundle is self-contained");
  }
  const users = final.filter((i) => i.op === "USER");
  const user = users.at(-1)?.args.split(":")[0];
  if (user === undefined) problems.push("no USER: the image would run as root");
  else if (!/^\d+$/.test(user) || user === "0") problems.push(`USER ${user} must be a numeric non-root UID (runAsNonRoot checks it)`);
  const run = [...final].reverse().find((i) => i.op === "ENTRYPOINT" || i.op === "CMD");
  if (run === undefined || !run.args.includes("/app/function.mjs")) problems.push("ENTRYPOINT/CMD does not run the bundle");
  return problems;
}

const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8");

describe("Dockerfile", () => {
  it("builds from dist/<function>.mjs on Node 22, as a numeric non-root user", () => {
    expect(dockerfileProblems(dockerfile)).toEqual([]);
  });

  it("runs as the UID the Knative Services name", () => {
    const uid = Number(instructions(dockerfile).filter((i) => i.op === "USER").at(-1)!.args.split(":")[0]);
    const { docs } = loadDir();
    for (const fn of STEPS) {
      expect(find(docs, "Service", serviceName(fn)).spec.template.spec.containers[0].securityContext.runAsUser, fn).toBe(uid);
    }
  });

  it("sends only the bundles to the build (.dockerignore)", () => {
    const lines = readFileSync(join(ROOT, ".dockerignore"), "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"));
    expect(lines).toEqual(["*", "!dist/*.mjs"]);
  });

  it("detects a root image, a foreign base and node_modules", () => {
    expect(dockerfileProblems(dockerfile.replace(/^USER .*$/m, "USER root"))).toEqual([expect.stringContaining("USER root")]);
    expect(dockerfileProblems(dockerfile.replace(/^USER .*$/m, ""))).toEqual(["no USER: the image would run as root"]);
    expect(dockerfileProblems(dockerfile.replace(/^FROM .*$/m, "FROM node:20-alpine"))).toEqual([expect.stringContaining("is not Node.js 22")]);
    expect(dockerfileProblems(`${dockerfile}\nCOPY node_modules /app/node_modules\n`)).toEqual(
      expect.arrayContaining([expect.stringContaining("only the bundle from dist/"), expect.stringContaining("self-contained")]),
    );
  });

  // The image holds the bundle alone: run each bundle from an empty folder (no node_modules
  // anywhere above it) and see it load every module and get as far as reading its step keys; the
  // dead-letter sink, which has none, as far as listening (then it is stopped).
  it.each(STEPS)("dist/%s.mjs runs with no node_modules", async (fn) => {
    const bundle = join(ROOT, "dist", `${fn}.mjs`);
    expect(existsSync(bundle), "npm run build writes it (the test setup runs it)").toBe(true);
    const dir = mkdtempSync(join(tmpdir(), "podcert-image-"));
    try {
      copyFileSync(bundle, join(dir, "function.mjs"));
      if (!isKeyedStep(fn)) {
        // No keys, no kubeconfig: it starts and listens; its output up to then shows no missing module.
        const out = await untilListening(join(dir, "function.mjs"), dir);
        expect(out).not.toMatch(/ERR_MODULE_NOT_FOUND|Cannot find (package|module)/);
        expect(out).toContain('"msg":"listening"');
        return;
      }
      const missing = join(dir, "no-keys");
      const result = await promisify(execFile)(process.execPath, [join(dir, "function.mjs")], {
        cwd: dir,
        env: { PATH: process.env.PATH ?? "", PORT: "0", PODCERT_KEYS_DIR: missing, PODCERT_CA_POOL: join(dir, "no-ca.yaml") },
        timeout: 20_000,
      }).then(
        () => ({ code: 0, out: "" }),
        (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code, out: `${e.stdout ?? ""}${e.stderr ?? ""}` }),
      );
      expect(result.out).not.toMatch(/ERR_MODULE_NOT_FOUND|Cannot find (package|module)/);
      expect(result.out).toContain(missing);
      expect(result.code).not.toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Runs a bundle (PORT 0, nothing else set) until it logs "listening", then stops it; its output so far. */
function untilListening(script: string, cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script], { cwd, env: { PATH: process.env.PATH ?? "", PORT: "0", KUBECONFIG: "" }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`not listening within 20 s:\n${out}`));
    }, 20_000);
    const seen = (chunk: Buffer) => {
      out += chunk.toString("utf8");
      if (out.includes('"msg":"listening"')) {
        clearTimeout(timer);
        child.kill("SIGTERM");
        resolve(out);
      }
    };
    child.stdout.on("data", seen);
    child.stderr.on("data", seen);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (!out.includes('"msg":"listening"')) reject(new Error(`exited (${String(code)}) before listening:\n${out}`));
    });
  });
}
