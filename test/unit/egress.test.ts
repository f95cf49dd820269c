/** Egress in pure terms: the allow-list's form, the worker's ceiling, and what a sandbox with one carries. */
import {
  checkNetwork,
  egressMetadata,
  EGRESS_ANNOTATION,
  EGRESS_LABEL,
  networkNotes,
  parseEgressCeiling,
  parseEgressEntry,
  proxyEnv,
  sandboxEgress,
  withinCeiling,
} from '../../core/egress';
import { buildJob, launcherTask } from '../../core/manifests';
import { claimPatch } from '../../core/pool';
import { DEFAULT_POLICY, type ExecutionPolicy } from '../../core/policy';
import { InvalidInputError, validateInput } from '../../core/validate';

const ceiling = parseEgressCeiling('data.example.org *.example.net:443,8443 pypi.example.com');
const policy: ExecutionPolicy = { ...DEFAULT_POLICY, egress: { allow: ceiling, maxBytes: 1 << 20, maxConnections: 4 } };

test('entries: a domain, a *.suffix wildcard, optional ports; IPs and bad names are refused', () => {
  expect(parseEgressEntry('Data.Example.org.')).toEqual({ host: 'data.example.org', ports: [443, 80] });
  expect(parseEgressEntry('*.example.net:8443')).toEqual({ host: '*.example.net', ports: [8443] });
  expect(parseEgressEntry('a.example.net:443,80,443')).toEqual({ host: 'a.example.net', ports: [443, 80] });
  for (const bad of [
    '10.0.0.1',
    '169.254.169.254:80',
    '[::1]',
    '*',
    '*.',
    'localhost',
    'a.*.example.org',
    'ex ample.org',
  ])
    expect(() => parseEgressEntry(bad)).toThrow();
  expect(() => parseEgressEntry('a.example.org:70000')).toThrow(/port 70000/);
});

test('a caller can only narrow the ceiling: within it passes, beyond it is InvalidInput naming the domain', () => {
  expect(withinCeiling(parseEgressEntry('data.example.org:443'), ceiling)).toBe(true);
  expect(withinCeiling(parseEgressEntry('x.example.net'), ceiling)).toBe(false); // port 80 is not in the ceiling
  expect(withinCeiling(parseEgressEntry('x.example.net:8443'), ceiling)).toBe(true);
  expect(withinCeiling(parseEgressEntry('*.a.example.net:443'), ceiling)).toBe(true);
  expect(withinCeiling(parseEgressEntry('example.net:443'), ceiling)).toBe(false); // *.x is not x itself
  expect(withinCeiling(parseEgressEntry('*.example.org'), ceiling)).toBe(false);

  const r = validateInput({ code: '1', network: { allow: ['data.example.org', 'api.example.net:8443'] } }, policy);
  expect(r.egress).toEqual([
    { host: 'data.example.org', ports: [443, 80] },
    { host: 'api.example.net', ports: [8443] },
  ]);
  const refused = () =>
    validateInput({ code: '1', network: { allow: ['data.example.org', 'evil.example.com'] } }, policy);
  expect(refused).toThrow(InvalidInputError);
  expect(refused).toThrow(/network.allow\[1\]: evil.example.com is not allowed by this worker's egress policy/);
  // No ceiling at all (the worker's default): every allow-list is refused, and says so.
  const none = { ...policy, egress: { ...policy.egress!, allow: [] } };
  expect(() => validateInput({ code: '1', network: { allow: ['data.example.org'] } }, none)).toThrow(
    /no network at all/,
  );
  // A client that does not know the worker's ceiling checks the form only.
  expect(
    validateInput({ code: '1', network: { allow: ['anything.example.com'] } }, DEFAULT_POLICY).egress,
  ).toHaveLength(1);
  expect(() => validateInput({ code: '1', network: { allow: ['10.1.2.3'] } }, DEFAULT_POLICY)).toThrow(/IP address/);
  expect(checkNetwork({ allow: 'x' }, policy).error?.field).toBe('network.allow');
  expect(validateInput({ code: '1' }, policy).egress).toBeUndefined();
});

test('a sandbox with egress: its pod carries the annotation and label, its task the proxy; without, nothing', () => {
  const request = validateInput({ code: 'print(1)', network: { allow: ['data.example.org'] } }, policy);
  const egress = sandboxEgress('x-e1-1', request.egress!, policy);
  expect(egress).toEqual({ id: 'x-e1-1', allow: request.egress, maxBytes: 1 << 20, maxConnections: 4 });
  const network = { egress, env: proxyEnv('10.88.0.1:3128', 'x-e1-1', 'secret'), proxy: '10.88.0.1:3128' };
  const job = buildJob({
    executionId: 'e1',
    attempt: 1,
    namespace: 'ns',
    request,
    policy,
    launcherSource: 'x',
    network,
  });
  const meta = job.spec!.template.metadata!;
  expect(meta.labels![EGRESS_LABEL]).toBe('on');
  expect(JSON.parse(meta.annotations![EGRESS_ANNOTATION])).toEqual(egress);
  // The credential is in the task only (never in the pod's spec, which more can read).
  expect(JSON.stringify(job)).not.toContain('secret');
  const task = launcherTask('e1', 1, { ...request, env: { HTTPS_PROXY: 'mine' } }, policy, 'handed', network);
  expect(task.env.HTTPS_PROXY).toBe('http://x-e1-1:secret@10.88.0.1:3128');
  expect(task.egress).toEqual({ proxy: '10.88.0.1:3128' });
  const plain = buildJob({ executionId: 'e1', attempt: 1, namespace: 'ns', request, policy, launcherSource: 'x' });
  expect(plain.spec!.template.metadata!.labels![EGRESS_LABEL]).toBeUndefined();
  expect(launcherTask('e1', 1, request, policy, 'handed').egress).toBeUndefined();
  const patch = claimPatch(
    { metadata: { resourceVersion: '7' } },
    { executionId: 'e1', attempt: 1, request, policy, now: 0, network },
  ) as {
    metadata: { labels: Record<string, string>; annotations: Record<string, string> };
  };
  expect(patch.metadata.labels[EGRESS_LABEL]).toBe('on');
  expect(patch.metadata.annotations[EGRESS_ANNOTATION]).toBe(egressMetadata(egress).annotations[EGRESS_ANNOTATION]);
});

test('what a reader is told of refusals names the option that allows a domain', () => {
  const notes = networkNotes(
    {
      allow: ['data.example.org'],
      reached: [],
      refused: [
        {
          host: 'evil.example.com',
          port: 443,
          kind: 'connect',
          at: 1,
          sent: 0,
          received: 0,
          reason: 'not on the list',
        },
        {
          host: 'evil.example.com',
          port: 443,
          kind: 'connect',
          at: 2,
          sent: 0,
          received: 0,
          reason: 'not on the list',
        },
      ],
    },
    '--allow-net DOMAIN',
  );
  expect(notes).toEqual([
    '[network: evil.example.com:443 was refused: not on the list]',
    '[network: only the allow-list is reachable (data.example.org); --allow-net DOMAIN allows a domain]',
  ]);
  expect(networkNotes(undefined, 'x')).toEqual([]);
});
