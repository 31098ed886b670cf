/**
 * Who each part of the local run is on a cluster, read from the knative/ manifests themselves:
 * the RBAC documents, the ServiceAccount each Knative Service's pods run as, and the
 * ApiServerSource's. The local run authenticates each process as that ServiceAccount against an
 * embedded API server enforcing those documents, so a call the manifests do not allow fails
 * locally as it would on a cluster (a wrong serviceAccountName included).
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { serviceAccountUser, type UserInfo } from "./apiserver/rbac.js";
import { ConfigError } from "../shared/errors.js";
import { readText } from "../shared/runtime/load.js";

export interface KnativeIdentities {
  /** Every document `kubectl apply -k <dir>` would apply (the server keeps the RBAC ones). */
  documents: unknown[];
  /** Knative Service name (e.g. podcert-sign) → the user its pods authenticate as. */
  services: Map<string, UserInfo>;
  /** The ApiServerSource's receive adapter. */
  source: UserInfo;
}

interface Manifest {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string };
  spec?: { serviceAccountName?: string; template?: { spec?: { serviceAccountName?: string } } };
}

export function loadKnativeIdentities(dir: string): KnativeIdentities {
  const documents: unknown[] = [];
  for (const file of manifestFiles(dir)) {
    for (const [i, doc] of parseAllDocuments(readText(join(dir, file), "Knative manifest")).entries()) {
      if (doc.errors.length > 0) throw new ConfigError(`${join(dir, file)}: document ${i}: ${doc.errors[0]?.message ?? "invalid YAML"}`);
      const obj = doc.toJSON() as unknown;
      if (obj !== null && obj !== undefined) documents.push(obj);
    }
  }
  const services = new Map<string, UserInfo>();
  let source: UserInfo | undefined;
  for (const m of documents as Manifest[]) {
    // Pods without serviceAccountName run as their namespace's "default" ServiceAccount.
    const namespace = m.metadata?.namespace ?? "default";
    if (m.apiVersion === "serving.knative.dev/v1" && m.kind === "Service" && m.metadata?.name !== undefined) {
      services.set(m.metadata.name, serviceAccountUser(namespace, m.spec?.template?.spec?.serviceAccountName ?? "default"));
    }
    if (m.apiVersion === "sources.knative.dev/v1" && m.kind === "ApiServerSource") {
      if (source !== undefined) throw new ConfigError(`${dir}: more than one ApiServerSource; the local run emulates one`);
      source = serviceAccountUser(namespace, m.spec?.serviceAccountName ?? "default");
    }
  }
  if (source === undefined) throw new ConfigError(`${dir}: no ApiServerSource (sources.knative.dev/v1) to take the identity of`);
  return { documents, services, source };
}

/** The kustomization's resources, as `kubectl apply -k` reads them; without one, every YAML file. */
function manifestFiles(dir: string): string[] {
  const kustomization = join(dir, "kustomization.yaml");
  if (existsSync(kustomization)) {
    const k = parseAllDocuments(readText(kustomization, "kustomization"))[0]?.toJSON() as { resources?: unknown } | undefined;
    if (!Array.isArray(k?.resources) || k.resources.some((r) => typeof r !== "string")) {
      throw new ConfigError(`${kustomization}: resources must be a list of files`);
    }
    return k.resources as string[];
  }
  try {
    return readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
  } catch (e) {
    throw new ConfigError(`cannot read Knative manifests in ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** The user a function's Service runs as; a function the manifests do not deploy is a ConfigError. */
export function userOfService(ids: KnativeIdentities, service: string): UserInfo {
  const user = ids.services.get(service);
  if (user === undefined) throw new ConfigError(`no Knative Service ${service} in the manifests: the local run cannot tell which ServiceAccount it runs as`);
  return user;
}

/**
 * The Namespaces the manifests create (podcert's own), which a cluster file usually lacks: the
 * local run and the tests add them, as `kubectl apply -k knative/` would, so what a function
 * writes into its own namespace (the trust publisher's ConfigMap) has somewhere to go.
 */
export function manifestNamespaces(ids: KnativeIdentities, existing: readonly unknown[]): unknown[] {
  const have = new Set(existing.map((o) => o as Manifest).filter((o) => o.kind === "Namespace").map((o) => o.metadata?.name));
  return ids.documents.map((d) => d as Manifest).filter((d) => d.apiVersion === "v1" && d.kind === "Namespace" && !have.has(d.metadata?.name));
}
