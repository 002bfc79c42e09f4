/** Naming in NATS's claim registry (core/nats.ts) that the agent needs without loading the NATS client. */

/**
 * The registry's name for a step of a document in its current generation. `mesh reprocess`
 * starts a new one (the step's records into `superseded[]`): the key its earlier success left
 * marked done until the TTL must not hold the re-run back, while two sites that see the same
 * document still compute the same name, so one of them reserves.
 */
export function registryStep(doc: { superseded?: unknown }, step: string): string {
  const generation = Array.isArray(doc.superseded) ? doc.superseded.filter((s) => (s as { step?: unknown } | null)?.step === step).length : 0;
  return generation === 0 ? step : `${step}~${generation}`;
}
