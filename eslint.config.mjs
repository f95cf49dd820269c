// Lint: typescript-eslint with type information, and the project's layers as import rules. Formatting is Prettier's
// (`npm run format`); eslint-config-prettier turns off the rules it owns.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

/** A sibling folder of the project, however deep the importing file sits. */
const layer = (...names) => names.flatMap((n) => [`../${n}`, `../${n}/*`, `../../${n}`, `../../${n}/*`]);

const IO_MODULES = ['node:*', 'fs', 'child_process', 'net', 'http', 'https'];
const TEMPORAL_RUNTIMES = ['@temporalio/client', '@temporalio/worker', '@temporalio/activity', '@temporalio/workflow'];
/** Development tooling: never part of what production runs. */
const DEV_TOOLING = [...layer('dev', 'test'), '../scripts/**', '../../scripts/**', '@temporalio/testing'];

/** An import rule: these patterns are refused (with the message); `paths` and `more` add finer exceptions. */
const refuse = (patterns, message, paths = [], more = []) => ({
  '@typescript-eslint/no-restricted-imports': ['error', { paths, patterns: [{ group: patterns, message }, ...more] }],
});

export default tseslint.config(
  {
    ignores: [
      'node_modules/**',
      'dist/**',
      'bench-results/**',
      'scratch-tmp/**',
      '.stack/**',
      'coverage/**',
      'launcher/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/require-await': 'off',
    },
  },
  // core/: pure logic. No I/O, no Temporal runtime, nothing from the layers above it (Kubernetes types only).
  {
    files: ['core/**/*.ts'],
    rules: refuse(
      [
        ...IO_MODULES,
        ...TEMPORAL_RUNTIMES,
        ...layer('activities', 'workflows', 'client', 'worker', 'cli', 'integrations'),
        ...DEV_TOOLING,
      ],
      'core/ is pure: no I/O, no Temporal runtime, no imports from the layers above it',
      [{ name: '@kubernetes/client-node', allowTypeImports: true, message: 'core/ may use the Kubernetes types only' }],
    ),
  },
  // workflows/: deterministic. @temporalio/workflow, core/ and the activities' types only.
  {
    files: ['workflows/**/*.ts'],
    rules: refuse(
      [
        ...IO_MODULES,
        '@temporalio/client',
        '@temporalio/worker',
        '@temporalio/activity',
        '@kubernetes/*',
        ...layer('client', 'worker', 'cli', 'integrations'),
        ...DEV_TOOLING,
      ],
      'workflows/ run in the deterministic sandbox: @temporalio/workflow, core/ and activity types only',
      [
        {
          name: '../activities',
          allowTypeImports: true,
          message: 'workflows import activity types only (proxyActivities)',
        },
        {
          name: '../../activities',
          allowTypeImports: true,
          message: 'workflows import activity types only (proxyActivities)',
        },
      ],
      [
        {
          group: ['../activities/*', '../../activities/*'],
          allowTypeImports: true,
          message: 'workflows import activity types only (proxyActivities)',
        },
      ],
    ),
  },
  // activities/: the side effects (Kubernetes, and Temporal's client for the reconciler and the pool). Never the
  // workflows, our client, the worker process or development tooling.
  {
    files: ['activities/**/*.ts'],
    rules: refuse(
      [
        '@temporalio/workflow',
        '@temporalio/worker',
        ...layer('workflows', 'client', 'worker', 'cli', 'integrations'),
        ...DEV_TOOLING,
      ],
      'activities/ depend on core/ and their API clients only',
    ),
  },
  // client/: talks to Temporal. No worker, no Kubernetes, no activities.
  {
    files: ['client/**/*.ts'],
    rules: refuse(
      [
        '@temporalio/worker',
        '@temporalio/activity',
        '@kubernetes/*',
        ...layer('activities', 'worker', 'cli', 'integrations'),
        ...DEV_TOOLING,
      ],
      'client/ talks to Temporal only',
    ),
  },
  // What production runs: the worker and the integrations import no development tooling (the stack's helpers are dev/).
  {
    files: ['worker/**/*.ts', 'integrations/**/*.ts'],
    rules: refuse(
      [...DEV_TOOLING, ...layer('cli')],
      'production code imports no development tooling (dev/, scripts/, test/)',
    ),
  },
  // cli/: ships (bin/durable-sandbox.js). It reaches Temporal through client/, runs a worker through worker/, and
  // brings the local stack up with its own local-stack.ts: no development tooling, no activities or workflows.
  {
    files: ['cli/**/*.ts'],
    rules: refuse(
      [...DEV_TOOLING, ...layer('activities', 'workflows')],
      'cli/ ships: client/, worker/, integrations/ and core/ only, no development tooling (dev/, scripts/, test/)',
    ),
  },
  // Plain JavaScript (configs, the CLI's shim): no type information, CommonJS globals.
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      parserOptions: { projectService: false, project: false, program: null },
      sourceType: 'commonjs',
      globals: {
        module: 'writable',
        require: 'readonly',
        process: 'readonly',
        __dirname: 'readonly',
        console: 'readonly',
      },
    },
  },
  {
    files: ['**/*.js'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['eslint.config.mjs'],
    languageOptions: { sourceType: 'module' },
  },
  // Tests and scripts: loose fixtures and jest's matchers.
  {
    files: ['test/**/*.ts', 'scripts/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },
  prettier,
);
