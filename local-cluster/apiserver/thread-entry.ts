/** Entry of the embedded API server's thread (thread.ts), bundled as dist/podcert-apiserver.mjs. */
import { serveApiServerThread } from "./thread.js";

await serveApiServerThread();
