// nfs-mount-options (warn only; kubernetes#130521, #60645): NFS behaviour across server trouble and kubelet
// restarts is decided by mount options that are easy to leave to chance. Warn when `timeo` and
// `retrans` are not set explicitly (client defaults differ by protocol and version), and say in one
// line what `soft` trades (I/O errors instead of hangs, at the risk of partial writes) against the
// default `hard` (processes hang until the server answers, across server or kubelet trouble).
//
// Where the options live: PersistentVolumes with `spec.nfs` (`spec.mountOptions`, or the older
// annotation `volume.beta.kubernetes.io/mount-options`, which kubelet prefers when both are set),
// StorageClasses of NFS provisioners (`mountOptions`, copied into the PVs they provision). Inline
// `nfs` volumes in a pod spec have no place for mount options at all.

import { Type, type Static } from '@sinclair/typebox';
import { fitWarning, StringList } from '../admission/policy.js';
import type { AdmissionRequest } from '../admission/review.js';
import { globMatcher } from '../k8s/glob.js';
import { podSpecOf, POD_SPEC_RULES, volumeAt, volumesOf } from '../k8s/pod-spec.js';
import type { Finding, Policy, PolicyContext } from '../admission/policy.js';
import type { KubeObject } from '../k8s/object.js';

export const POLICY = 'nfs-mount-options';

/** The PV annotation kubelet reads before `spec.mountOptions` (comma-separated). */
export const MOUNT_OPTIONS_ANNOTATION = 'volume.beta.kubernetes.io/mount-options';

const Settings = Type.Object(
  {
    provisioners: StringList({
      default: ['*nfs*'],
      description: 'StorageClass provisioners whose volumes are NFS mounts (exact or globs, compared in lower case).',
    }),
  },
  { additionalProperties: false },
);
export type NfsSettings = Static<typeof Settings>;

export interface PreparedNfs {
  isNfsProvisioner(provisioner: unknown): boolean;
}

export function prepareNfs(settings: NfsSettings): PreparedNfs {
  const matches = globMatcher(settings.provisioners.map((p) => p.toLowerCase()));
  return { isNfsProvisioner: (provisioner) => typeof provisioner === 'string' && matches(provisioner.toLowerCase()) };
}

export interface NfsMountOptions {
  timeo: boolean;
  retrans: boolean;
  /** The last of `hard`/`soft` wins, as with mount(8); `hard` is the default. */
  soft: boolean;
  explicitHard: boolean;
}

/** Read mount options given as list entries, each possibly itself comma-separated (`hard,timeo=600`). */
export function parseNfsMountOptions(entries: readonly unknown[]): NfsMountOptions {
  const out: NfsMountOptions = { timeo: false, retrans: false, soft: false, explicitHard: false };
  for (const entry of entries) {
    if (typeof entry !== 'string') continue;
    for (const option of entry.split(',')) {
      const eq = option.indexOf('=');
      const key = (eq === -1 ? option : option.slice(0, eq)).trim().toLowerCase();
      if (key === 'timeo') out.timeo = true;
      else if (key === 'retrans') out.retrans = true;
      else if (key === 'soft' || key === 'hard') {
        out.soft = key === 'soft';
        out.explicitHard = key === 'hard';
      }
    }
  }
  return out;
}

/**
 * The texts of this policy's findings, as templates of already-rendered parts: the policy fills
 * them with values, the ValidatingAdmissionPolicy generator (src/vap/) with CEL expressions.
 */
export const NFS_TEXT = {
  /** `missing`: `timeo and retrans`, `timeo` or `retrans`; `hardNote`: empty for a soft mount, else {@link NFS_TEXT.hardNote}. */
  notSet: (missing: string, hardNote: string) => `NFS mount options do not set ${missing}${hardNote}`,
  hardNote: (hard: string) => `; with ${hard}, I/O hangs through server or kubelet trouble`,
  hardExplicit: 'hard',
  hardDefault: 'hard (the default)',
  notSetDetail:
    'Without them the client defaults apply, and they differ by protocol (TCP: 60 s and 2 retries; UDP: far ' +
    'shorter). A hard mount blocks processes until the server answers, across server or kubelet trouble.',
  timeoutFix: 'set both explicitly, e.g. hard,timeo=600,retrans=2 (or soft,timeo=150,retrans=3 for read-mostly data)',
  soft: 'NFS mount is soft: I/O errors instead of hangs when the server is slow, at the risk of partial writes',
  softDetail:
    'After retrans retries of timeo each, a soft mount returns EIO to the application; writes in flight may be ' +
    'partly applied. Use hard for data that must not be torn.',
  softFix: 'keep soft only where applications handle I/O errors; otherwise use hard with explicit timeo and retrans',
  annotationNote: ` kubelet uses the ${MOUNT_OPTIONS_ANNOTATION} annotation and ignores spec.mountOptions.`,
  storageClassNote: ' The StorageClass mountOptions are copied into every PersistentVolume it provisions.',
  annotationPath: `metadata.annotations[${JSON.stringify(MOUNT_OPTIONS_ANNOTATION)}]`,
  /** `quotedVolume`: the volume name as JSON (`"share"`). */
  inline: (quotedVolume: string) => `inline NFS volumes cannot carry mount options; use a PersistentVolume (volume ${quotedVolume})`,
  inlineDetail:
    'A pod-level nfs volume is mounted with the node defaults (hard, client-chosen timeo and retrans), with no way ' +
    'to set them.',
  inlineFix: 'move the share into a PersistentVolume (spec.nfs plus spec.mountOptions) and mount it through a PersistentVolumeClaim',
} as const;

/** Findings for one set of NFS mount options found at `path`. */
function judgeOptions(options: NfsMountOptions, path: string, note = ''): Finding[] {
  const T = NFS_TEXT;
  const findings: Finding[] = [];
  const missing = [!options.timeo && 'timeo', !options.retrans && 'retrans'].filter(Boolean).join(' and ');
  if (missing) {
    const hardNote = options.soft ? '' : T.hardNote(options.explicitHard ? T.hardExplicit : T.hardDefault);
    findings.push({ policy: POLICY, severity: 'warn', message: T.notSet(missing, hardNote), detail: T.notSetDetail + note, path, fix: T.timeoutFix });
  }
  if (options.soft) {
    findings.push({ policy: POLICY, severity: 'warn', message: T.soft, detail: T.softDetail + note, path, fix: T.softFix });
  }
  return findings;
}

function persistentVolumeFindings(pv: KubeObject): Finding[] {
  if (!pv.spec?.nfs || typeof pv.spec.nfs !== 'object') return [];
  const annotation = pv.metadata?.annotations?.[MOUNT_OPTIONS_ANNOTATION];
  const listed = Array.isArray(pv.spec.mountOptions) ? pv.spec.mountOptions : [];
  if (typeof annotation === 'string') {
    const note = listed.length ? NFS_TEXT.annotationNote : '';
    return judgeOptions(parseNfsMountOptions([annotation]), NFS_TEXT.annotationPath, note);
  }
  return judgeOptions(parseNfsMountOptions(listed), 'spec.mountOptions');
}

function storageClassFindings(sc: KubeObject, settings: PreparedNfs): Finding[] {
  if (!settings.isNfsProvisioner(sc.provisioner)) return [];
  return judgeOptions(parseNfsMountOptions(Array.isArray(sc.mountOptions) ? sc.mountOptions : []), 'mountOptions', NFS_TEXT.storageClassNote);
}

function inlineVolumeFindings(req: AdmissionRequest): Finding[] {
  const loc = podSpecOf(req.kind.kind, req.object);
  if (!loc) return [];
  const findings: Finding[] = [];
  const volumes = volumesOf(loc.spec);
  for (let i = 0; i < volumes.length; i++) {
    const v = volumeAt(volumes, i);
    if (!v?.nfs || typeof v.nfs !== 'object') continue;
    findings.push({
      policy: POLICY,
      severity: 'warn',
      message: fitWarning(NFS_TEXT.inline(JSON.stringify(v.name ?? '')), 'inline NFS volumes cannot carry mount options; use a PersistentVolume'),
      detail: NFS_TEXT.inlineDetail,
      path: `${loc.path}.volumes[${i}].nfs`,
      fix: NFS_TEXT.inlineFix,
    });
  }
  return findings;
}

export const nfsMountOptionsPolicy: Policy<NfsSettings, PreparedNfs> = {
  name: POLICY,
  description: 'Warns about NFS volumes whose timeo/retrans/hard/soft behaviour is left to chance.',
  match: [
    { groups: [''], versions: ['v1'], resources: ['persistentvolumes'], operations: ['CREATE', 'UPDATE'] },
    { groups: ['storage.k8s.io'], versions: ['v1'], resources: ['storageclasses'], operations: ['CREATE', 'UPDATE'] },
    ...POD_SPEC_RULES,
  ],
  settings: Settings,
  prepare: prepareNfs,

  validate(req: AdmissionRequest, ctx: PolicyContext<PreparedNfs>): Finding[] {
    const obj = req.object;
    if (!obj) return [];
    if (req.resource.resource === 'persistentvolumes') return persistentVolumeFindings(obj);
    if (req.resource.resource === 'storageclasses') return storageClassFindings(obj, ctx.settings);
    return inlineVolumeFindings(req);
  },
};
