// Reading kube-apiserver flags: command lines in both forms, shells, quotes, kubeadm extraArgs in
// both shapes (v1beta3 map, v1beta4 list), KubeadmControlPlane, and the captured mirror pods.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  clusterConfigurationIssuerFlags,
  issuerFlags,
  kubeadmConfigMapIssuerFlags,
  kubeadmControlPlaneIssuerFlags,
  mirrorPodIssuerFlags,
  parseArgv,
  parseExtraArgs,
  shellWords,
} from '../../src/k8s/apiserver-flags.js';
import { reviewByPrefix } from '../helpers/fixtures.js';

describe('parseArgv', () => {
  it('reads --flag=value and --flag value, repeated flags in order', () => {
    const flags = parseArgv([
      'kube-apiserver',
      '--service-account-issuer=https://a.example',
      '--service-account-issuer',
      'https://b.example',
      '--allow-privileged',
      '--service-account-issuer=https://c.example',
    ]);
    assert.deepEqual(flags, [
      { name: 'service-account-issuer', value: 'https://a.example' },
      { name: 'service-account-issuer', value: 'https://b.example' },
      { name: 'allow-privileged', value: undefined },
      { name: 'service-account-issuer', value: 'https://c.example' },
    ]);
  });

  it('keeps = inside values (only the first = separates)', () => {
    const [f] = parseArgv(['--service-account-jwks-uri=https://x.example/keys?a=b&c=d']);
    assert.deepEqual(f, { name: 'service-account-jwks-uri', value: 'https://x.example/keys?a=b&c=d' });
    const [g] = parseArgv(['--feature-gates', 'A=true,B=false']);
    assert.deepEqual(g, { name: 'feature-gates', value: 'A=true,B=false' });
  });

  it('strips quotes a manifest author put around a value', () => {
    assert.deepEqual(parseArgv(['--service-account-issuer="https://q.example"', "--api-audiences='x,y'"]), [
      { name: 'service-account-issuer', value: 'https://q.example' },
      { name: 'api-audiences', value: 'x,y' },
    ]);
    assert.deepEqual(parseArgv(['--service-account-issuer', '"https://q.example"']), [
      { name: 'service-account-issuer', value: 'https://q.example' },
    ]);
  });

  it('reads the words of `sh -c "<script>"` with shell quoting', () => {
    const argv = [
      '/bin/sh',
      '-c',
      `exec /usr/local/bin/kube-apiserver --service-account-issuer="https://new.example" \\\n  --service-account-issuer 'https://old.example' --api-audiences=a\\,b 1>>/var/log/kube-apiserver.log 2>&1`,
    ];
    assert.deepEqual(issuerFlags(parseArgv(argv)), {
      issuers: ['https://new.example', 'https://old.example'],
      apiAudiences: ['a', 'b'],
    });
  });

  it('skips words that are not flags (the binary behind /go-runner)', () => {
    const flags = parseArgv(['/go-runner', '--log-file=/var/log/x.log', '/usr/local/bin/kube-apiserver', '--v=2']);
    assert.deepEqual(flags.map((f) => f.name), ['log-file', 'v']);
  });

  it('a flag followed by another flag has no value', () => {
    assert.deepEqual(parseArgv(['--service-account-issuer', '--v=2']), [
      { name: 'service-account-issuer', value: undefined },
      { name: 'v', value: '2' },
    ]);
    assert.deepEqual(issuerFlags(parseArgv(['--service-account-issuer', '--v=2'])).issuers, []);
  });
});

describe('shellWords', () => {
  it('handles single quotes, double quotes with escapes, backslashes and separators', () => {
    assert.deepEqual(shellWords(`a 'b c' "d \\"e\\" \\$f" g\\ h;i`), ['a', 'b c', 'd "e" $f', 'g h', 'i']);
    assert.deepEqual(shellWords('  '), []);
    assert.deepEqual(shellWords(`x ''`), ['x', '']);
  });
  it('an unterminated quote ends at the end of the script instead of throwing', () => {
    assert.deepEqual(shellWords(`a 'b c`), ['a', 'b c']);
    assert.deepEqual(shellWords(`a "b c`), ['a', 'b c']);
  });
});

describe('issuerFlags', () => {
  it('collects issuers in order, the last jwks-uri and comma-separated, repeatable api-audiences', () => {
    const f = issuerFlags(
      parseArgv([
        '--service-account-issuer=https://a',
        '--service-account-jwks-uri=https://x/1',
        '--service-account-jwks-uri=https://x/2',
        '--api-audiences=one,two',
        '--api-audiences',
        'three',
      ]),
    );
    assert.deepEqual(f, { issuers: ['https://a'], jwksUri: 'https://x/2', apiAudiences: ['one', 'two', 'three'] });
  });
});

describe('kubeadm extraArgs', () => {
  it('v1beta3 map and v1beta4 list (repeated names allowed)', () => {
    assert.deepEqual(parseExtraArgs({ 'service-account-issuer': 'https://a', 'v': 2 }).flags, [
      { name: 'service-account-issuer', value: 'https://a' },
      { name: 'v', value: '2' },
    ]);
    const list = parseExtraArgs([
      { name: 'service-account-issuer', value: 'https://new' },
      { name: 'service-account-issuer', value: 'https://old' },
    ]);
    assert.deepEqual(list.flags.map((f) => f.value), ['https://new', 'https://old']);
  });
  it('bad shapes are reported, not thrown', () => {
    assert.match(parseExtraArgs([{ value: 'x' }]).error!, /extraArgs\[0\] is not a \{name, value\} entry/);
    assert.match(parseExtraArgs('--x=y').error!, /extraArgs is a string/);
    assert.deepEqual(parseExtraArgs(undefined), { flags: [] });
  });
  it('no issuer in extraArgs means kubeadm default https://kubernetes.default.svc.<dnsDomain>', () => {
    assert.deepEqual(clusterConfigurationIssuerFlags({ apiServer: {} }).flags, {
      issuers: ['https://kubernetes.default.svc.cluster.local'],
      defaulted: true,
    });
    assert.deepEqual(clusterConfigurationIssuerFlags({ networking: { dnsDomain: 'corp.local' } }).flags?.issuers, [
      'https://kubernetes.default.svc.corp.local',
    ]);
  });
  it('the ConfigMap: v1beta3 (046) and v1beta4 (047) from the captured reviews', () => {
    assert.deepEqual(kubeadmConfigMapIssuerFlags(reviewByPrefix('046').request.object).flags, {
      issuers: ['https://kubernetes.default.svc.cluster.local'],
    });
    const r47 = reviewByPrefix('047').request;
    assert.deepEqual(kubeadmConfigMapIssuerFlags(r47.object).flags, { issuers: ['https://oidc.prod.example.com'] });
    assert.deepEqual(kubeadmConfigMapIssuerFlags(r47.oldObject).flags?.issuers, ['https://kubernetes.default.svc.cluster.local']);
  });
  it('the ConfigMap: broken YAML, wrong types and a missing key', () => {
    assert.match(kubeadmConfigMapIssuerFlags({ data: { ClusterConfiguration: 'apiServer: [unclosed' } }).error!, /not valid YAML/);
    assert.match(kubeadmConfigMapIssuerFlags({ data: { ClusterConfiguration: '- a\n- b\n' } }).error!, /not a mapping/);
    assert.match(kubeadmConfigMapIssuerFlags({ data: { ClusterConfiguration: 7 } }).error!, /not a string/);
    assert.deepEqual(kubeadmConfigMapIssuerFlags({ data: {} }), {});
    assert.deepEqual(kubeadmConfigMapIssuerFlags(null), {});
  });
  it('KubeadmControlPlane (049, 050) and its v1beta4-style list', () => {
    assert.deepEqual(kubeadmControlPlaneIssuerFlags(reviewByPrefix('049').request.object).flags?.issuers, ['https://master.prod.example.com']);
    assert.deepEqual(kubeadmControlPlaneIssuerFlags(reviewByPrefix('050').request.object).flags?.issuers, [
      'https://api.internal.prod.example.com',
    ]);
    const kcp = {
      spec: {
        kubeadmConfigSpec: {
          clusterConfiguration: {
            apiServer: {
              extraArgs: [
                { name: 'service-account-issuer', value: 'https://new' },
                { name: 'service-account-issuer', value: 'https://old' },
                { name: 'api-audiences', value: 'https://old' },
              ],
            },
          },
        },
      },
    };
    assert.deepEqual(kubeadmControlPlaneIssuerFlags(kcp).flags, { issuers: ['https://new', 'https://old'], apiAudiences: ['https://old'] });
  });
});

describe('mirror pods', () => {
  it('kubeadm (043): command only', () => {
    assert.deepEqual(mirrorPodIssuerFlags(reviewByPrefix('043').request.object), {
      issuers: ['https://kubernetes.default.svc.cluster.local'],
    });
  });
  it('kOps (045): both flag forms, in order, behind /go-runner', () => {
    assert.deepEqual(mirrorPodIssuerFlags(reviewByPrefix('045').request.object), {
      issuers: ['https://api.internal.prod.example.com', 'https://master.prod.example.com'],
      jwksUri: 'https://api.internal.prod.example.com/openid/v1/jwks',
      apiAudiences: ['kubernetes.svc.default'],
    });
  });
  it('not a mirror pod: an ordinary pod, or a kube-apiserver pod outside kube-system', () => {
    assert.equal(mirrorPodIssuerFlags(reviewByPrefix('006').request.object), undefined);
    const pod = reviewByPrefix('043').request.object;
    pod.metadata.namespace = 'default';
    assert.equal(mirrorPodIssuerFlags(pod), undefined);
    assert.equal(mirrorPodIssuerFlags(undefined), undefined);
  });
});
