// Configuration: built-in defaults, YAML and JSON files, flags and environment on top, and errors
// that name the path of every bad field with the reason (YAML syntax errors: the line).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { DEFAULT_CONFIG } from '../../src/config/schema.js';
import { flagOverrides } from '../../src/cli/serve.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import { projectedTokenLifetimePolicy } from '../../src/policies/projected-token-lifetime.js';
import type { AnyPolicy } from '../../src/admission/policy.js';
import { tempDir } from '../helpers/temp-dir.js';

const POLICIES: AnyPolicy[] = [
  {
    name: 'token-lifetime',
    description: 'test policy with settings',
    match: [],
    settings: Type.Object({ maxSeconds: Type.Integer({ minimum: 600, default: 86400 }) }, { additionalProperties: false }),
  },
  { name: 'pvc-guard', description: 'test policy', match: [] },
];

const dir = tempDir('tokenguard-config-');
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('valid configuration', () => {
  it('without a file, the built-in defaults: warn mode, port 8443, 8 MiB bodies', () => {
    const c = loadConfig(undefined, POLICIES);
    assert.deepEqual(c, DEFAULT_CONFIG);
    assert.equal(c.mode, 'warn');
    assert.equal(c.server.port, 8443);
    assert.equal(c.server.maxBodyBytes, 8 * 1024 * 1024);
  });

  it('a YAML file overrides what it names and keeps the other defaults', () => {
    const path = file(
      'ok.yaml',
      [
        'mode: enforce',
        'server:',
        '  port: 9443',
        'policies:',
        '  token-lifetime: { mode: warn, maxSeconds: 3600, exemptions: { users: [ci-bot] } }',
        'namespaceOverrides:',
        '  - namespaces: [dev-*, sandbox]',
        '    mode: off',
        '    policies: { pvc-guard: warn }',
        'exemptions:',
        '  namespaces: [kube-system]',
      ].join('\n'),
    );
    const c = loadConfig(path, POLICIES);
    assert.equal(c.mode, 'enforce');
    assert.equal(c.server.port, 9443);
    assert.equal(c.server.address, DEFAULT_CONFIG.server.address);
    assert.deepEqual(c.policies['token-lifetime'], { mode: 'warn', maxSeconds: 3600, exemptions: { users: ['ci-bot'] } });
    assert.deepEqual(c.namespaceOverrides, [{ namespaces: ['dev-*', 'sandbox'], mode: 'off', policies: { 'pvc-guard': 'warn' } }]);
    assert.deepEqual(c.exemptions, { users: [], groups: [], namespaces: ['kube-system'] });
  });

  it('a JSON file works the same, and an empty file means defaults', () => {
    const c = loadConfig(file('ok.json', JSON.stringify({ log: { level: 'debug' } })), POLICIES);
    assert.equal(c.log.level, 'debug');
    assert.deepEqual(loadConfig(file('empty.yaml', ''), POLICIES), DEFAULT_CONFIG);
  });

  it('flags and environment beat the file; flags beat environment', () => {
    const path = file('port.yaml', 'server: { port: 9443, address: 127.0.0.1 }');
    const env = { TOKENGUARD_PORT: '7443', TOKENGUARD_LOG_LEVEL: 'warn', TOKENGUARD_TLS_CERT: '/env/tls.crt' };
    const c = loadConfig(path, POLICIES, flagOverrides({ port: '6443', 'no-cluster': true }, env));
    assert.equal(c.server.port, 6443);
    assert.equal(c.server.address, '127.0.0.1');
    assert.equal(c.server.tlsCertFile, '/env/tls.crt');
    assert.equal(c.log.level, 'warn');
    assert.equal(c.cluster.enabled, false);
  });
});

describe('self-managed TLS and certificate files', () => {
  it('a certificate given by flag or environment turns self-managed TLS off; otherwise the file decides', () => {
    const path = file('self-managed.yaml', 'server:\n  selfManagedTLS: { enabled: true }');
    assert.equal(loadConfig(path, POLICIES).server.selfManagedTLS.enabled, true);
    const env = { TOKENGUARD_TLS_CERT: '/tls/tls.crt', TOKENGUARD_TLS_KEY: '/tls/tls.key' };
    const withFiles = loadConfig(path, POLICIES, flagOverrides({}, env));
    assert.equal(withFiles.server.selfManagedTLS.enabled, false);
    assert.equal(withFiles.server.tlsCertFile, '/tls/tls.crt');
    assert.equal(loadConfig(path, POLICIES, flagOverrides({ 'tls-key': '/k' }, {})).server.selfManagedTLS.enabled, false);
    assert.equal(DEFAULT_CONFIG.server.selfManagedTLS.enabled, false, 'off unless configured: development and tests serve files');
  });
});

describe('invalid configuration', () => {
  const cases: { what: string; yaml: string; problems: (string | RegExp)[] }[] = [
    { what: 'unknown top-level key', yaml: 'colour: red', problems: ['colour: unknown key'] },
    { what: 'unknown nested key (a typo)', yaml: 'server:\n  prot: 9443', problems: ['server.prot: unknown key'] },
    { what: 'wrong type', yaml: 'server:\n  port: "8443"', problems: ['server.port: must be integer'] },
    { what: 'out of range', yaml: 'server:\n  port: 70000', problems: ['server.port: must be <= 65535'] },
    { what: 'body limit below the minimum', yaml: 'server:\n  maxBodyBytes: 10', problems: ['server.maxBodyBytes: must be >= 1024'] },
    { what: 'bad enum', yaml: 'mode: strict', problems: ['mode: must be one of ["enforce","warn","off"]'] },
    { what: 'bad per-policy mode', yaml: 'policies:\n  token-lifetime:\n    mode: loud', problems: ['policies.token-lifetime.mode: must be one of ["enforce","warn","off"]'] },
    { what: "a policy's own setting", yaml: 'policies:\n  token-lifetime:\n    maxSeconds: 5', problems: ['policies.token-lifetime.maxSeconds: must be >= 600'] },
    { what: 'unknown policy', yaml: 'policies:\n  token-lifetim: {}', problems: ['policies.token-lifetim: unknown policy (known policies: token-lifetime, pvc-guard)'] },
    { what: 'unknown key in a policy', yaml: 'policies:\n  pvc-guard:\n    mod: warn', problems: ['policies.pvc-guard.mod: unknown key'] },
    { what: 'empty namespace list', yaml: 'namespaceOverrides:\n  - namespaces: []\n    mode: off', problems: ['namespaceOverrides[0].namespaces: must NOT have fewer than 1 items'] },
    { what: 'override without namespaces', yaml: 'namespaceOverrides:\n  - mode: off', problems: ['namespaceOverrides[0].namespaces: required'] },
    {
      what: 'override naming an unknown policy',
      yaml: 'namespaceOverrides:\n  - namespaces: [a]\n  - namespaces: [b]\n    policies: { nope: warn }',
      problems: ['namespaceOverrides[1].policies.nope: unknown policy (known policies: token-lifetime, pvc-guard)'],
    },
    { what: 'override with a bad mode', yaml: 'namespaceOverrides:\n  - namespaces: [a]\n    policies: { pvc-guard: loud }', problems: ['namespaceOverrides[0].policies.pvc-guard: must be one of ["enforce","warn","off"]'] },
    { what: 'exemptions not a list', yaml: 'exemptions:\n  users: bob', problems: ['exemptions.users: must be array'] },
    { what: 'a scalar file', yaml: 'just words', problems: ['(root): must be object'] },
    {
      what: 'self-managed TLS and certificate files at once',
      yaml: 'server:\n  tlsCertFile: /tls/tls.crt\n  selfManagedTLS: { enabled: true }',
      problems: ["server.tlsCertFile: set, but server.selfManagedTLS.enabled is true: tokenguard serves either its own certificate or the file's; remove one"],
    },
    {
      what: 'self-managed lifetimes that cannot work',
      yaml: 'server:\n  selfManagedTLS: { enabled: true, caLifetimeSeconds: 600, certLifetimeSeconds: 900, checkSeconds: 30, overlapSeconds: 30 }',
      problems: [
        'server.selfManagedTLS.certLifetimeSeconds: longer than caLifetimeSeconds',
        'server.selfManagedTLS.overlapSeconds: must be at least twice checkSeconds (60), so every replica re-reads the Secret within a rotation step',
      ],
    },
    { what: 'a CA lifetime below two minutes', yaml: 'server:\n  selfManagedTLS: { caLifetimeSeconds: 30 }', problems: ['server.selfManagedTLS.caLifetimeSeconds: must be >= 120'] },
    { what: 'several problems at once', yaml: 'mode: x\nserver: { port: -1 }\nlog: { level: loud }', problems: ['server.port: must be >= 0', 'log.level: must be one of ["debug","info","warn","error"]', 'mode: must be one of ["enforce","warn","off"]'] },
  ];
  for (const c of cases) {
    it(`${c.what}: names the path and the reason`, () => {
      const path = file('bad.yaml', c.yaml);
      let message = '';
      const problems = problemsOf(() => {
        try {
          loadConfig(path, POLICIES);
        } catch (err) {
          message = (err as Error).message;
          throw err;
        }
      });
      assert.deepEqual(new Set(problems), new Set(c.problems));
      assert.ok(message.startsWith(`invalid configuration in ${path}:\n`), message);
    });
  }

  it('a YAML syntax error gives the line and column', () => {
    const path = file('syntax.yaml', 'server:\n  port: 9443\n  address: [unclosed\nmode: warn\n');
    const [problem] = problemsOf(() => loadConfig(path, POLICIES));
    assert.match(problem!, /^line \d+, column \d+: /);
    assert.ok(/line [34],/.test(problem!), problem);
  });

  it('a duplicate key is a syntax error with its line', () => {
    const path = file('dup.yaml', 'mode: warn\nserver: {}\nmode: enforce\n');
    const [problem] = problemsOf(() => loadConfig(path, POLICIES));
    assert.match(problem!, /^line 3, column 1: .*[Mm]ap keys must be unique/);
  });

  it('a missing file is named', () => {
    const [problem] = problemsOf(() => loadConfig(join(dir, 'missing.yaml'), POLICIES));
    assert.match(problem!, /^cannot read file: ENOENT/);
  });

  it('bad values from flags and environment are reported like the file', () => {
    let err: unknown;
    try {
      loadConfig(undefined, POLICIES, flagOverrides({}, { TOKENGUARD_PORT: '9443', TOKENGUARD_CALLER_AUTH: 'maybe', TOKENGUARD_LOG_LEVEL: 'chatty' }));
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ConfigError);
    assert.equal(err.source, 'flags and environment');
    assert.deepEqual(new Set(err.problems), new Set(['server.callerAuth.mode: must be one of ["off","audit","enforce"]', 'log.level: must be one of ["debug","info","warn","error"]']));
  });
});

describe('checks across settings (a policy\'s checkSettings, on defaults merged with config)', () => {
  const lifetime = [projectedTokenLifetimePolicy as AnyPolicy];
  const problems = (yaml: string) => problemsOf(() => loadConfig(file('lifetime.yaml', yaml), lifetime));

  it('a minimum above the configured maximum is refused with its path', () => {
    assert.deepEqual(problems('policies:\n  projected-token-lifetime: { minSeconds: 7200, maxSeconds: 3600 }'), [
      'policies.projected-token-lifetime.minSeconds: 7200 is above maxSeconds (3600)',
    ]);
  });

  it('a minimum above the default maximum (86400) is refused too', () => {
    assert.deepEqual(problems('policies:\n  projected-token-lifetime: { minSeconds: 90000 }'), [
      'policies.projected-token-lifetime.minSeconds: 90000 is above maxSeconds (86400)',
    ]);
  });

  it('a namespace entry is checked against the bound it falls through to', () => {
    const yaml = [
      'policies:',
      '  projected-token-lifetime:',
      '    maxSeconds: 7200',
      '    namespaces:',
      '      - { namespaces: [ok], minSeconds: 3600 }',
      '      - { namespaces: [batch-*], minSeconds: 10000 }',
      '      - { namespaces: [short], maxSeconds: 600, minSeconds: 1200 }',
    ].join('\n');
    assert.deepEqual(problems(yaml), [
      'policies.projected-token-lifetime.namespaces[1].minSeconds: minSeconds 10000 would be above maxSeconds 7200 for these namespaces',
      'policies.projected-token-lifetime.namespaces[2].minSeconds: minSeconds 1200 would be above maxSeconds 600 for these namespaces',
    ]);
  });

  it('a namespace maximum below the global minimum names the maximum', () => {
    const yaml = 'policies:\n  projected-token-lifetime:\n    minSeconds: 3600\n    namespaces: [{ namespaces: [x], maxSeconds: 1800 }]';
    assert.deepEqual(problems(yaml), [
      'policies.projected-token-lifetime.namespaces[0].maxSeconds: minSeconds 3600 would be above maxSeconds 1800 for these namespaces',
    ]);
  });

  it('equal bounds and the defaults pass', () => {
    const c = loadConfig(file('lifetime-ok.yaml', 'policies:\n  projected-token-lifetime: { minSeconds: 3600, maxSeconds: 3600 }'), lifetime);
    assert.equal(c.policies['projected-token-lifetime']?.minSeconds, 3600);
    assert.doesNotThrow(() => loadConfig(undefined, lifetime));
  });
});


describe('serviceAccounts in the token policies\' namespace entries', () => {
  const problems = (yaml: string) => problemsOf(() => loadConfig(file('accounts.yaml', yaml), BUILTIN_POLICIES));

  it('accepted on lifetime and audience entries, as exact names or globs', () => {
    const yaml = [
      'policies:',
      '  projected-token-lifetime: { namespaces: [{ namespaces: [ci], serviceAccounts: [deployer, "build-*"], maxSeconds: 172800 }] }',
      '  projected-token-audience: { namespaces: [{ namespaces: ["team-*"], serviceAccounts: [x], allowed: [vault] }] }',
    ].join('\n');
    const c = loadConfig(file('accounts-ok.yaml', yaml), BUILTIN_POLICIES);
    assert.deepEqual((c.policies['projected-token-lifetime']?.namespaces as { serviceAccounts: string[] }[])[0]!.serviceAccounts, ['deployer', 'build-*']);
  });

  it('bad values and misplaced keys name their path', () => {
    assert.deepEqual(problems('policies:\n  projected-token-lifetime: { namespaces: [{ namespaces: [ci], serviceAccounts: [], maxSeconds: 7200 }] }'), [
      'policies.projected-token-lifetime.namespaces[0].serviceAccounts: must NOT have fewer than 1 items',
    ]);
    assert.deepEqual(problems('policies:\n  projected-token-audience: { namespaces: [{ namespaces: [ci], serviceAccounts: deployer, allowed: [a] }] }'), [
      'policies.projected-token-audience.namespaces[0].serviceAccounts: must be array',
    ]);
    assert.deepEqual(problems('policies:\n  projected-token-audience: { namespaces: [{ namespaces: [ci], serviceAccounts: [""], allowed: [a] }] }'), [
      'policies.projected-token-audience.namespaces[0].serviceAccounts[0]: must NOT have fewer than 1 characters',
    ]);
    assert.deepEqual(problems('policies:\n  projected-token-lifetime: { namespaces: [{ namespaces: [ci], serviceAccount: [x] }] }'), [
      'policies.projected-token-lifetime.namespaces[0].serviceAccount: unknown key',
    ]);
    // Modes stay per namespace (docs/configuration.md says why).
    assert.deepEqual(problems('namespaceOverrides:\n  - { namespaces: [ci], serviceAccounts: [x], mode: off }'), ['namespaceOverrides[0].serviceAccounts: unknown key']);
  });
});
