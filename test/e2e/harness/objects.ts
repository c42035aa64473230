// Objects the scenarios create. There is no scheduler, kubelet or provisioner: pods are bound to
// their node by nodeName and stay Pending unless a test sets their phase, and claims stay Pending.

import type { KubeObject } from '../../../src/k8s/object.js';

/** A 1Gi ReadWriteOnce claim. */
export function claim(namespace: string, name: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name, namespace },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
  };
}

/** A pod bound to `node` that mounts `claimName`; the API server injects the token volume. */
export function podOn(namespace: string, name: string, node: string, claimName: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace },
    spec: {
      nodeName: node,
      containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.9' }],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName } }],
    },
  };
}

/** A pod spec with one projected token volume `t`; without an audience, the API server's own. */
export function tokenSpec(expirationSeconds: number, audience?: string): KubeObject {
  return {
    containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.9' }],
    volumes: [{ name: 't', projected: { sources: [{ serviceAccountToken: { path: 'token', expirationSeconds, ...(audience ? { audience } : {}) } }] } }],
  };
}

/** A pod with that spec. */
export function tokenPod(namespace: string, name: string, expirationSeconds: number, audience?: string): KubeObject {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace }, spec: tokenSpec(expirationSeconds, audience) };
}
