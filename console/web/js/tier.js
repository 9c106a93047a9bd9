// This console's place in the hierarchy (enterprise → province → national),
// from GET api/tier: the header shows it, and pages ask whether this is an
// upper tier (one that ranks enterprises and issues notices).
import { get } from "./api.js";

let identity = null;

/** GET api/tier, kept for the pages; null when the API has no tier (an older console). */
export async function loadTier() {
  try {
    identity = await get("tier", undefined, { quiet: true, redirect: false });
  } catch {
    identity = null;
  }
  return identity;
}

export function currentTier() {
  return identity;
}

export function clearTier() {
  identity = null;
}

/** A province or the national centre: roll-up, grading and issuing notices. */
export function isUpperTier() {
  return identity?.tier === "province" || identity?.tier === "national";
}

/** The organisation this console speaks for (the notices' issuer or target). */
export function ownOrganization() {
  return identity?.id ?? null;
}
