// The rule groups of a PrometheusRule, as a Prometheus rules file (what promtool reads):
//   node hack/prometheus-rules.mjs PROMETHEUSRULE.yaml [--without-annotations] > rules.yaml
// --without-annotations drops every alert's annotations, for `promtool test rules`: promtool
// compares annotations as well as labels, and the unit tests are about when alerts fire.
// Needs the project's node_modules (`npm ci`): it reads YAML with the `yaml` package.
import { readFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';

const [file, flag] = process.argv.slice(2);
if (!file || (flag && flag !== '--without-annotations')) {
  process.stderr.write('usage: node hack/prometheus-rules.mjs PROMETHEUSRULE.yaml [--without-annotations]\n');
  process.exit(2);
}
const rule = parse(readFileSync(file, 'utf8'));
if (rule?.kind !== 'PrometheusRule' || !Array.isArray(rule.spec?.groups)) {
  process.stderr.write(`${file}: not a PrometheusRule with spec.groups\n`);
  process.exit(2);
}
const groups = rule.spec.groups.map((g) => ({
  ...g,
  rules: g.rules.map((r) => {
    if (flag !== '--without-annotations') return r;
    const { annotations: _, ...rest } = r;
    return rest;
  }),
}));
process.stdout.write(stringify({ groups }, { lineWidth: 0 }));
