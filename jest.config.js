// Unit tests cover pure logic; integration tests run against the real local stack (scripts/stack/up.sh) or the
// cluster and Temporal named by KUBECONFIG / TEMPORAL_ADDRESS. There is no mock cluster.
// @kubernetes/client-node 1.x and a few of its dependencies ship ES modules only, so ts-jest also transforms them.
const esmPackages = ['@kubernetes/client-node', 'openid-client', 'oauth4webapi', 'jose', 'lodash-es'].join('|');
const transform = {
  '^.+\\.[tj]sx?$': ['ts-jest', { tsconfig: { allowJs: true, isolatedModules: true }, diagnostics: false }],
};
const transformIgnorePatterns = [`/node_modules/(?!(${esmPackages})/)`];
// The running stack's files (etcd's *.snap among them, which jest would take for stale snapshots) and the build.
const modulePathIgnorePatterns = ['<rootDir>/.stack/', '<rootDir>/dist/'];

module.exports = {
  projects: [
    {
      displayName: 'unit',
      testEnvironment: 'node',
      testMatch: ['<rootDir>/test/unit/**/*.test.ts', '<rootDir>/test/replay/**/*.test.ts'],
      transform,
      transformIgnorePatterns,
      modulePathIgnorePatterns,
    },
    {
      // The workflows' own logic on a Temporal dev server (the stack's CLI binary) with mocked activities: seconds.
      displayName: 'workflows',
      testEnvironment: 'node',
      testMatch: ['<rootDir>/test/workflows/**/*.test.ts'],
      transform,
      transformIgnorePatterns,
      modulePathIgnorePatterns,
    },
    {
      displayName: 'integration',
      testEnvironment: 'node',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
      transform,
      transformIgnorePatterns,
      modulePathIgnorePatterns,
      globalSetup: '<rootDir>/test/integration/global-setup.ts',
      globalTeardown: '<rootDir>/test/integration/global-teardown.ts',
      slowTestThreshold: 60,
    },
  ],
};
