import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'out/**', '.deploy/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
      eqeqeq: ['error', 'always'],
    },
  },
  {
    // Orchestrator code is replayed: no I/O, no clocks, no randomness, no real timers.
    files: ['lib/orchestrator.ts', 'lib/orchestration.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['node:*', 'fs', 'http', 'https', '@azure/storage-blob', '@azure/identity', 'onnxruntime-node', 'sharp', './storage', './pipeline', './model', './model/*', './local/*'], message: 'orchestrator code must not do I/O: call an activity' }] }],
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
