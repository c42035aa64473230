// The built-in policies, in the order they run. Each lives in its own file.

import type { AnyPolicy } from './types.js';
import { pvcInUsePolicy } from './pvc-in-use.js';

export const BUILTIN_POLICIES: readonly AnyPolicy[] = [pvcInUsePolicy];
