/**
 * The one way the functions make HTTP requests: a dispatcher's own `request`, for a URL. undici's
 * top-level `request` only splits the URL and picks the global dispatcher, but it lives in undici's
 * index, which the function bundles evaluate only when something uses it (esbuild.config.mjs
 * undiciSlim): calling it would load fetch, WebSocket, caches and mocks as well.
 */
import { getGlobalDispatcher, type Dispatcher } from "undici";

export function requestUrl(
  url: string,
  options: Omit<Dispatcher.RequestOptions, "origin" | "path">,
  dispatcher: Dispatcher = getGlobalDispatcher(),
): Promise<Dispatcher.ResponseData> {
  const u = new URL(url);
  return dispatcher.request({ ...options, origin: u.origin, path: `${u.pathname}${u.search}` });
}
