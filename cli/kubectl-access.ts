/**
 * kubectl against the embedded API server: kubectl sends no credentials to a plain http:// server
 * (kubernetes/kubectl#744), so `podcert demo --keep-running` also serves the API over HTTPS with
 * a throwaway CA and a certificate for localhost, and writes a kubeconfig that trusts that CA.
 */
import { generateKeyPairSync, createPrivateKey } from "node:crypto";
import { writeFileSync } from "node:fs";
import { kubeconfigFor, type EmbeddedApiServer } from "../local-cluster/apiserver/server.js";
import { prepareCaSigner } from "../shared/x509/ca-signer.js";
import { issueLeaf } from "../shared/x509/leaf.js";
import { pemEncode } from "../shared/x509/pem.js";
import { createCa } from "./ca-create.js";

/** Starts the HTTPS listener and writes the administrator's kubeconfig for it to `path` (mode 0600). */
export async function serveKubectl(api: EmbeddedApiServer, path: string, now = new Date()): Promise<string> {
  const ca = await createCa({ signerName: "podcert embedded API server", keyAlgorithm: "ECDSAP256", validityDays: 1, now });
  const key = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const leaf = issueLeaf(prepareCaSigner(ca.certificate, createPrivateKey(ca.privateKey)), {
    spkiDer: key.publicKey.export({ type: "spki", format: "der" }),
    keyType: "ECDSAP256",
    uris: [],
    dnsNames: ["localhost"],
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + 86_400_000),
  });
  const url = await api.listenTls({ certPem: leaf.pem, keyPem: pemEncode("PRIVATE KEY", key.privateKey.export({ type: "pkcs8", format: "der" })) });
  writeFileSync(path, kubeconfigFor(url, api.token(), ca.certificate), { mode: 0o600 });
  return url;
}
