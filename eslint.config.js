// ESLint: typescript-eslint's type-checked rules over src/, test/ and bench/. The layering of
// src/ is checked by test/layers.test.ts (it names both files of an upward import).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** The no-unsafe-* rules flag every use of an `any` value. */
const unsafeAny = ['no-unsafe-argument', 'no-unsafe-assignment', 'no-unsafe-call', 'no-unsafe-member-access', 'no-unsafe-return'];
const off = (rules) => Object.fromEntries(rules.map((r) => [`@typescript-eslint/${r}`, 'off']));

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'certs/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // node:test's describe/it/before/after return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }] },
      ],
      // `_`-prefixed names are deliberately unused (a destructured key left out, a parameter kept for its position).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' }],
    },
  },
  {
    // Kubernetes objects are JSON of any shape. These modules read them (and API bodies) as `any`
    // (k8s/object.ts KubeObject) and check each field's shape where they use it, so the no-unsafe
    // rules would flag every read; everywhere else in src/ they stay on.
    files: [
      'src/k8s/**',
      'src/policies/**',
      'src/admission/{patch,review}.ts',
      'src/cluster/{cache,client,issuers,projection,reflector,webhook-configurations,webhook-registration}.ts',
      'src/cli/{audit,check,dev,evaluate,manifests,token-inspect}.ts',
    ],
    rules: { ...off(unsafeAny), '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // Tests and benchmarks read AdmissionReviews, API bodies and fixtures as untyped JSON on purpose.
    files: ['test/**', 'bench/**'],
    // An async test body or fake API method without an await is fine: it only has to return a promise.
    rules: { ...off(unsafeAny), '@typescript-eslint/no-explicit-any': 'off', '@typescript-eslint/require-await': 'off' },
  },
  { files: ['**/*.js', '**/*.mjs'], ...tseslint.configs.disableTypeChecked },
  { files: ['hack/**'], languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly' } } },
);
