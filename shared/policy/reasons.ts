/**
 * Every reason a request is denied with, in the order validate checks them: the one list (README,
 * "Certificates and statuses", names the same; test/unit/policy/reasons.test.ts checks both).
 * errors.ts derives DenialReason from it.
 */
export const DENIAL_REASONS = [
  "NamespaceNotAllowed",
  "InvalidUnverifiedUserAnnotations",
  "UnsupportedKeyType",
  "InvalidProofOfPossession",
  "PodMismatch",
  "TooManyDNSNames",
] as const;

export function isDenialReason(s: string): s is (typeof DENIAL_REASONS)[number] {
  return (DENIAL_REASONS as readonly string[]).includes(s);
}
