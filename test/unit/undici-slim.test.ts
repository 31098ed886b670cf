// The function bundles' stand-in for "undici" (esbuild.config.mjs undiciSlim): it evaluates the
// dispatchers alone, with the Dispatcher API on them, and loads undici's index only when a name
// that lives there (fetch, the top-level request) is first used, as the same modules (one class
// per dispatcher). node:zlib shows whether the index ran: only its fetch and interceptors load it.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { afterAll, describe, expect, it } from "vitest";
import { builtinsByRequire, common, undiciSlim } from "../../esbuild.config.mjs";

const ENTRY = `
import { createServer } from "node:http";
import { Agent, getGlobalDispatcher, fetch, request } from "undici";
const indexRan = () => process.moduleLoadList.includes("NativeModule zlib");
const atImport = indexRan();
const server = createServer((req, res) => res.end("ok")).listen(0, "127.0.0.1");
await new Promise((r) => server.once("listening", r));
const origin = "http://127.0.0.1:" + server.address().port;
const viaAgent = await (await new Agent().request({ origin, path: "/", method: "GET" })).body.text();
const viaGlobal = await (await getGlobalDispatcher().request({ origin, path: "/", method: "GET" })).body.text();
const afterDispatchers = indexRan();
const viaFetch = await (await fetch(origin)).text();
const viaRequest = await (await request(origin)).body.text();
const afterFetch = indexRan();
const index = await import("undici/index.js");
console.log(JSON.stringify({ atImport, afterDispatchers, afterFetch, viaAgent, viaGlobal, viaFetch, viaRequest, sameAgent: index.Agent === Agent }));
server.close();
process.exit(0);
`;

describe("the undici stand-in of the function bundles", () => {
  const dir = mkdtempSync(join(tmpdir(), "undici-slim-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("serves requests through its dispatchers without running undici's index, which fetch then loads", async () => {
    const out = join(dir, "entry.mjs");
    await build({ ...common, metafile: false, sourcemap: false, plugins: [undiciSlim, builtinsByRequire], stdin: { contents: ENTRY, resolveDir: process.cwd(), loader: "js" }, outfile: out });
    const r = spawnSync(process.execPath, [out], { encoding: "utf8", timeout: 20_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      atImport: false,
      afterDispatchers: false,
      afterFetch: true,
      viaAgent: "ok",
      viaGlobal: "ok",
      viaFetch: "ok",
      viaRequest: "ok",
      sameAgent: true,
    });
  });
});
