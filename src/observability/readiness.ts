// Readiness is the conjunction of named checks; /readyz reports each one, so an operator sees why.

export type ReadinessCheck = () => { ok: boolean; reason?: string };

export class Readiness {
  private readonly checks = new Map<string, ReadinessCheck>();

  set(name: string, check: ReadinessCheck): void {
    this.checks.set(name, check);
  }

  report(): { ready: boolean; checks: Record<string, { ok: boolean; reason?: string }> } {
    const checks: Record<string, { ok: boolean; reason?: string }> = {};
    let ready = true;
    for (const [name, check] of this.checks) {
      const r = check();
      checks[name] = r;
      if (!r.ok) ready = false;
    }
    return { ready, checks };
  }
}
