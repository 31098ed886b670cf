// shared/runtime/delivery-auth.ts: the PODCERT_OIDC_* configuration (off unless the audience is
// set; a partial one refused with the missing variable named) and the subject patterns.
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../shared/errors.js";
import { deliveryAuthConfigFromEnv, describeDeliveryAuth, subjectAllowed } from "../../../shared/runtime/delivery-auth.js";

const AUD = "serving.knative.dev/service/podcert/podcert-validate";
const ISS = "https://kubernetes.default.svc.cluster.local";
const JWKS = "https://kubernetes.default.svc/openid/v1/jwks";
const refused = (env: Record<string, string>) => {
  try {
    deliveryAuthConfigFromEnv(env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error("accepted");
};

describe("deliveryAuthConfigFromEnv", () => {
  it("is off when nothing is set (empty values count as unset)", () => {
    expect(deliveryAuthConfigFromEnv({})).toBeUndefined();
    expect(deliveryAuthConfigFromEnv({ PODCERT_OIDC_AUDIENCE: "", PODCERT_OIDC_ISSUER: " " })).toBeUndefined();
    expect(describeDeliveryAuth(undefined)).toEqual({ oidc: "off" });
  });

  it("reads a URL source with its CA and token files, and subject patterns", () => {
    const c = deliveryAuthConfigFromEnv({
      PODCERT_OIDC_AUDIENCE: AUD,
      PODCERT_OIDC_ISSUER: ISS,
      PODCERT_OIDC_JWKS_URL: JWKS,
      PODCERT_OIDC_JWKS_CA_FILE: "/ca.crt",
      PODCERT_OIDC_JWKS_TOKEN_FILE: "/token",
      PODCERT_OIDC_ALLOWED_SUBJECTS: " system:serviceaccount:podcert:a , system:serviceaccount:podcert:b-* ,",
    });
    expect(c).toEqual({
      audience: AUD,
      issuer: ISS,
      jwks: { kind: "url", url: JWKS, caFile: "/ca.crt", tokenFile: "/token" },
      allowedSubjects: ["system:serviceaccount:podcert:a", "system:serviceaccount:podcert:b-*"],
    });
    expect(describeDeliveryAuth(c)).toMatchObject({ oidc: "on", issuer: ISS, audience: AUD, jwks: JWKS });
  });

  it("reads a file source", () => {
    expect(deliveryAuthConfigFromEnv({ PODCERT_OIDC_AUDIENCE: AUD, PODCERT_OIDC_ISSUER: ISS, PODCERT_OIDC_JWKS_FILE: "/jwks.json" })?.jwks).toEqual({ kind: "file", path: "/jwks.json" });
  });

  it.each([
    [{ PODCERT_OIDC_AUDIENCE: AUD, PODCERT_OIDC_JWKS_URL: JWKS }, /PODCERT_OIDC_ISSUER is required/],
    [{ PODCERT_OIDC_AUDIENCE: AUD, PODCERT_OIDC_ISSUER: ISS }, /PODCERT_OIDC_JWKS_URL or PODCERT_OIDC_JWKS_FILE is required/],
    [{ PODCERT_OIDC_ISSUER: ISS, PODCERT_OIDC_JWKS_URL: JWKS }, /PODCERT_OIDC_ISSUER, PODCERT_OIDC_JWKS_URL set but PODCERT_OIDC_AUDIENCE is not/],
    [{ PODCERT_OIDC_ALLOWED_SUBJECTS: "x" }, /PODCERT_OIDC_AUDIENCE is not/],
    [{ PODCERT_OIDC_AUDIENCE: AUD, PODCERT_OIDC_ISSUER: ISS, PODCERT_OIDC_JWKS_URL: JWKS, PODCERT_OIDC_JWKS_FILE: "/f" }, /not both/],
    [{ PODCERT_OIDC_AUDIENCE: AUD, PODCERT_OIDC_ISSUER: ISS, PODCERT_OIDC_JWKS_URL: "http://kubernetes.default.svc/openid/v1/jwks" }, /must be an https URL/],
    [{ PODCERT_OIDC_AUDIENCE: AUD, PODCERT_OIDC_ISSUER: ISS, PODCERT_OIDC_JWKS_URL: "not a url" }, /is not a URL/],
    [{ PODCERT_OIDC_AUDIENCE: AUD, PODCERT_OIDC_ISSUER: ISS, PODCERT_OIDC_JWKS_FILE: "/f", PODCERT_OIDC_JWKS_TOKEN_FILE: "/t" }, /apply only to PODCERT_OIDC_JWKS_URL/],
    [{ PODCERT_OIDC_AUDIENCE: AUD, PODCERT_OIDC_ISSUER: ISS, PODCERT_OIDC_JWKS_FILE: "/f", PODCERT_OIDC_ALLOWED_SUBJECTS: "*" }, /leave the variable unset/],
    [{ PODCERT_OIDC_AUDIENCE: AUD, PODCERT_OIDC_ISSUER: ISS, PODCERT_OIDC_JWKS_FILE: "/f", PODCERT_OIDC_ALLOWED_SUBJECTS: "a*b" }, /may only end a pattern/],
    [{ PODCERT_OIDC_AUDIENCE: AUD, PODCERT_OIDC_ISSUER: ISS, PODCERT_OIDC_JWKS_FILE: "/f", PODCERT_OIDC_ALLOWED_SUBJECTS: " , " }, /names no subject/],
  ])("refuses %j", (env, message) => {
    expect(refused(env)).toMatch(message);
  });

  it("allows plain http only to loopback (tests)", () => {
    expect(deliveryAuthConfigFromEnv({ PODCERT_OIDC_AUDIENCE: AUD, PODCERT_OIDC_ISSUER: ISS, PODCERT_OIDC_JWKS_URL: "http://127.0.0.1:8080/jwks" })?.jwks.kind).toBe("url");
  });
});

describe("subjectAllowed", () => {
  const allowed = ["system:serviceaccount:podcert:exact", "system:serviceaccount:podcert:podcert-validate-*"];
  it.each([
    ["system:serviceaccount:podcert:exact", true],
    ["system:serviceaccount:podcert:exact2", false],
    ["system:serviceaccount:podcert:podcert-validate-pcr-add-oidc-eventing.knative.dev-trigger", true],
    ["system:serviceaccount:podcert:podcert-sign", false],
    ["system:serviceaccount:other:podcert-validate-x", false],
  ])("%s → %s", (sub, ok) => {
    expect(subjectAllowed(sub, allowed)).toBe(ok);
  });
  it("allows any subject without a list", () => {
    expect(subjectAllowed("anyone", undefined)).toBe(true);
  });
});
