// The built-in policies, in the order they run. Each lives in its own file.

import type { AnyPolicy } from '../admission/policy.js';
import { serviceAccountIssuerPolicy } from './service-account-issuer.js';
import { pvcInUsePolicy } from './pvc-in-use.js';
import { projectedTokenLifetimePolicy } from './projected-token-lifetime.js';
import { projectedTokenAudiencePolicy } from './projected-token-audience.js';
import { pvcTokenRiskPolicy } from './pvc-token-risk.js';
import { nfsMountOptionsPolicy } from './nfs-mount-options.js';

export const BUILTIN_POLICIES: readonly AnyPolicy[] = [
  pvcInUsePolicy,
  serviceAccountIssuerPolicy,
  projectedTokenLifetimePolicy,
  projectedTokenAudiencePolicy,
  pvcTokenRiskPolicy,
  nfsMountOptionsPolicy,
];
