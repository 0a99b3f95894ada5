import tseslint from 'typescript-eslint';
import layers from './eslint/layers.mjs';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'out/**', '.deploy/**', '.dist-scratch/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
      eqeqeq: ['error', 'always'],
    },
  },
  {
    // The tree is the architecture (DESIGN.md, Layout): imports go down the layers, no circles.
    files: ['lib/**/*.ts', 'functions/**/*.ts'],
    plugins: { lakeinfer: layers },
    rules: { 'lakeinfer/layers': 'error' },
  },
  {
    // Orchestrator code is replayed: no I/O, no clocks, no randomness, no real timers.
    files: ['lib/orchestration/orchestrator.ts', 'lib/job/totals.ts', 'lib/job/layout.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['node:*', 'fs', 'http', 'https', '@azure/storage-blob', '@azure/identity', 'onnxruntime-node', 'sharp', '../storage', '../storage/*', '../partition/pipeline', '../model', '../model/*', '../local/*', '../../local/*', '../cli/*'], message: 'orchestrator code must not do I/O: call an activity' }] }],
      'no-restricted-properties': ['error', { object: 'Math', property: 'random', message: 'not deterministic on replay' }, { object: 'Date', property: 'now', message: 'use context.df.currentUtcDateTime' }],
      'no-restricted-syntax': [
        'error',
        { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: 'use context.df.currentUtcDateTime' },
        { selector: "CallExpression[callee.name=/^(setTimeout|setInterval|fetch)$/]", message: 'use context.df.createTimer or an activity' },
        { selector: 'AwaitExpression', message: 'orchestrators yield tasks; they never await' },
      ],
    },
  },
);
