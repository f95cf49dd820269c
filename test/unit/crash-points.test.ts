/** How the crash-point harness names a request (the name its report and its failures carry). */
import { pointName } from '../../scripts/crash/crashable';

test('a request is named by its verb and resource, without namespace or object names', () => {
  expect(pointName('POST', '/api/v1/namespaces/ds/configmaps')).toBe('POST configmaps');
  expect(pointName('GET', '/api/v1/namespaces/ds/pods/p-1/log?container=sandbox&follow=true&limitBytes=9')).toBe(
    'GET pods/{}/log follow',
  );
  expect(pointName('GET', '/api/v1/namespaces/ds/pods?labelSelector=a%3Db&watch=true&resourceVersion=5')).toBe(
    'GET pods watch',
  );
  expect(pointName('DELETE', '/apis/batch/v1/namespaces/ds/jobs/ds-x-1')).toBe('DELETE jobs/{}');
  expect(pointName(undefined, '/api/v1/namespaces/ds/pods/p/attach?stdin=true')).toBe('GET pods/{}/attach');
});
