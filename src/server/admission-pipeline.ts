// The hot path: POST /validate and POST /mutate, as one pipeline of small steps, in the order the
// API server's call goes through them:
//   1. authenticate  the caller, from its headers and TLS session alone (before the body is read:
//                    in enforce an unauthenticated caller learns nothing of the review)
//   2. admit         the request's headers: content type, declared size, then `100 Continue`
//   3. readBody      up to the size limit
//   4. decode        the body into an AdmissionRequest (admission/review.ts)
//   5. authorize     a KEP-6060 caller for the API group it attests (needs the decoded review)
//   6. evaluate      the validating or the mutating pipeline of the engine, failing open on a bug
//   7. respond       the AdmissionReview, then count and log the decision
// It runs on the raw node:http request, ahead of express: express's per-request machinery (and
// body-parser's) costs more than half of the throughput a bare server reaches. Everything else
// (health, metrics, errors) stays in express. Each step but the orchestrator is exported and
// tested alone; none allocates a promise unless it really waits (a token to verify, a live lookup).

import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Engine } from '../admission/engine.js';
import type { Decision } from '../admission/policy.js';
import { fromDecision, reviewJson } from '../admission/response.js';
import { DecodeError, decodeReview, objectName, type AdmissionRequest } from '../admission/review.js';
import type { AdmissionRoute } from '../admission/routes.js';
import { errorMessage, errorStack } from '../observability/errors.js';
import { jsonString, type Logger } from '../observability/log.js';
import { RateLimitedLog } from '../observability/log-limit.js';
import { observeDecision, observeInvalid, type RejectionReason } from './admission-metrics.js';
import { callerIdentity, type CallerAuth, type Verdict } from './caller-auth.js';
import { recordOutcome, type OutcomeSinks } from './decision-events.js';
import { lingerBeforeClose } from './lingering-close.js';

export interface AdmissionPipelineOptions {
  engine: () => Engine;
  logger: Logger;
  maxBodyBytes: number;
  /** Who may call (config `server.callerAuth`); absent when its mode is off. */
  callerAuth?: CallerAuth;
  /** True once shutdown began: a review answered from then on closes its connection. */
  shuttingDown?: () => boolean;
  /**
   * The log lines a request can cause (rejections, stream and engine errors), rate-limited per
   * reason: a flood of bad requests is counted in full by the metrics, not logged in full.
   */
  limitedLog?: RateLimitedLog;
  /** Where denials, break-glass deletions and admitted claim deletions are recorded (absent without a cluster). */
  outcomes?: OutcomeSinks;
  /**
   * Records a review of the `observe` route (a TokenRequest) without I/O; without it, the route
   * still answers (allowed) and records nothing. It must not throw; a throw is logged, not answered.
   */
  observeTokenRequest?: (request: AdmissionRequest) => void;
}

/** Why a request is refused before any policy sees it: its HTTP status and one line. */
export interface Refusal {
  status: number;
  message: string;
  reason: RejectionReason;
  /** Close the connection after the answer (the client may still be sending a body we will not read). */
  close?: boolean;
  /** A caller refused by caller authentication (answered with `WWW-Authenticate`, logged by CallerAuth). */
  caller?: Verdict;
}

const isRefusal = (v: object): v is Refusal => 'status' in v;

/** `Expect: 100-continue`: node leaves the `100 Continue` to us (see the server's checkContinue). */
export function expectsContinue(req: IncomingMessage): boolean {
  return req.headers.expect?.toLowerCase() === '100-continue';
}

function isJsonContentType(value: string | undefined): boolean {
  if (!value) return false;
  const semi = value.indexOf(';');
  return (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase() === 'application/json';
}

/** Step 1: the caller's verdict, at once or once a token's signature is verified; what refuses it in enforce. */
export function callerRefusal(auth: CallerAuth, verdict: Verdict): Refusal | undefined {
  if (verdict.result === 'ok' || auth.mode !== 'enforce') return undefined;
  return { status: 401, reason: 'unauthenticated', message: `caller not authenticated: ${verdict.reason}`, caller: verdict };
}

/** Step 2: what the headers alone refuse (a body that is not JSON, or declared larger than the limit). */
export function headerRefusal(req: IncomingMessage, maxBodyBytes: number): Refusal | undefined {
  if (!isJsonContentType(req.headers['content-type'])) {
    return { status: 415, reason: 'unsupported_media_type', message: `Content-Type must be application/json, got ${JSON.stringify(req.headers['content-type'] ?? '')}` };
  }
  const declared = Number(req.headers['content-length']);
  if (declared > maxBodyBytes) {
    // Refused before the body is read (with `Expect: 100-continue`, no 100 Continue is sent: the
    // client need not send it at all). The connection closes once what still arrives is drained.
    return { status: 413, reason: 'too_large', message: `request body of ${declared} bytes exceeds the limit of ${maxBodyBytes} bytes`, close: true };
  }
  return undefined;
}

/** Step 3: the body, up to `maxBodyBytes`; `done` is called once, with the bytes or why not. */
export function readBody(req: IncomingMessage, maxBodyBytes: number, done: (body: Buffer | Refusal) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let tooLarge = false;
  req.on('data', (chunk: Buffer) => {
    if (tooLarge) return;
    size += chunk.length;
    if (size > maxBodyBytes) {
      tooLarge = true;
      chunks.length = 0;
      done({ status: 413, reason: 'too_large', message: `request body exceeds the limit of ${maxBodyBytes} bytes`, close: true });
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (!tooLarge) done(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
  });
}

/** Step 4: the AdmissionRequest in the body, or why there is none. */
export function decodeBody(body: Buffer): AdmissionRequest | Refusal {
  if (body.length === 0) return { status: 400, reason: 'empty_body', message: 'empty body: expected an admission.k8s.io/v1 AdmissionReview' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (err) {
    return { status: 400, reason: 'bad_json', message: `body is not valid JSON: ${errorMessage(err)}` };
  }
  try {
    return decodeReview(parsed).request;
  } catch (err) {
    return { status: err instanceof DecodeError ? err.status : 400, reason: 'invalid_review', message: errorMessage(err) };
  }
}

/** Step 5: the caller's final verdict, once the review is known: a KEP-6060 token may only ask about the group it attests. */
export function authorize(auth: CallerAuth, verdict: Verdict, request: AdmissionRequest): Verdict {
  return verdict.bound ? auth.checkAttestation(verdict, request) : verdict;
}

/** The answer when the engine itself broke (a bug: it contains policy failures): allow, and say so. */
const INTERNAL_ERROR: Decision = {
  allowed: true,
  warnings: ['tokenguard: internal error, request not checked; see the tokenguard logs'],
  auditAnnotations: {},
  findings: [],
  fired: [],
};

/** The `observe` route's answer, whatever it recorded: a kubelet's token refresh is never refused or delayed by tokenguard. */
const OBSERVED: Decision = Object.freeze({ allowed: true, warnings: [], auditAnnotations: {}, findings: [], fired: [], ran: [] });

/**
 * Step 6: the route's pipeline of the engine. A throw or a rejection is a bug: it fails open,
 * logged, and never escapes (an exception here would take the process down for every request).
 */
export function evaluate(engine: Engine, route: AdmissionRoute, request: AdmissionRequest, log: RateLimitedLog, done: (d: Decision) => void): void {
  const failOpen = (err: unknown) => {
    // A review that hits a bug can be sent again and again: rate-limited like a rejection.
    log.log('error', 'engine_failed', 'engine failed', { uid: request.uid, error: errorStack(err) });
    try {
      done(INTERNAL_ERROR);
    } catch (again) {
      log.log('error', 'answering_failed', 'answering failed', { uid: request.uid, error: errorStack(again) });
    }
  };
  const finish = (decision: Decision) => {
    try {
      done(decision);
    } catch (err) {
      failOpen(err);
    }
  };
  let decision: Decision | Promise<Decision>;
  try {
    decision = route === 'mutate' ? engine.mutate(request) : engine.validate(request);
  } catch (err) {
    return failOpen(err);
  }
  if (decision instanceof Promise) decision.then(finish, failOpen);
  else finish(decision);
}

/** Answer with JSON text already serialised. */
function send(res: ServerResponse, status: number, text: string, close: boolean, extra?: Record<string, string>): void {
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...extra };
  if (close) headers.connection = 'close';
  res.writeHead(status, headers);
  res.end(text);
}

/** Step 7: the AdmissionReview for the decision (the connection closes when shutdown began meanwhile). */
export function respond(res: ServerResponse, request: AdmissionRequest, decision: Decision, closing: boolean): number {
  const response = fromDecision(request.uid, decision);
  send(res, 200, reviewJson(response), closing);
  return response.warnings?.length ?? 0;
}

/** One request on its way through the pipeline. */
interface Exchange {
  opts: AdmissionPipelineOptions;
  route: AdmissionRoute;
  req: IncomingMessage;
  res: ServerResponse;
  /** performance.now() when the request arrived. */
  started: number;
  log: RateLimitedLog;
  /** The caller's verdict, once known (caller authentication on). */
  caller?: Verdict;
}

/**
 * Answer a refusal: the caller learns why, in one line; the metrics count every one by reason; the
 * log line names the client's address (and identity, when caller authentication knows it), and is
 * rate-limited per reason: a flood of bad requests cannot flood the log.
 */
function refuse(x: Exchange, r: Refusal): void {
  if (r.caller) x.opts.callerAuth?.record(r.caller, x.route, x.req); // CallerAuth logs refused callers, rate-limited too
  else {
    const caller = callerIdentity(x.caller, x.req);
    x.log.log('warn', `rejected_${r.reason}`, 'rejected admission request', {
      route: x.route,
      status: r.status,
      error: r.message,
      address: x.req.socket.remoteAddress ?? 'unknown',
      ...(caller ? { caller } : {}),
    });
  }
  // Answered before the whole body arrived: a connection that closes after this answer closes only
  // once the rest is drained, so the client can read it.
  if (!x.req.complete) lingerBeforeClose(x.req);
  observeInvalid(x.route, r.reason);
  const body = JSON.stringify({ error: { code: r.status, message: r.message } });
  send(x.res, r.status, body, r.close ?? false, r.caller ? { 'www-authenticate': 'Bearer' } : undefined);
}

/** Verification itself broke (a bug): an unauthenticated caller is not let through on it. */
function unverifiable(x: Exchange, err: unknown): Verdict {
  x.opts.logger.error('caller authentication failed unexpectedly', { error: errorStack(err) });
  return { method: 'bearer_token', result: 'invalid_signature', reason: 'the token could not be verified' };
}

/** Steps 4 to 7, once the body is in and the caller known (or not checked). */
function review(x: Exchange, body: Buffer, caller: Verdict | undefined): void {
  const auth = x.opts.callerAuth;
  x.caller = caller;
  const refused = caller && auth ? callerRefusal(auth, caller) : undefined;
  if (refused) return refuse(x, refused);
  const request = decodeBody(body);
  if (isRefusal(request)) {
    if (caller) auth!.record(caller, x.route, x.req);
    return refuse(x, request);
  }
  if (caller) {
    const final = (x.caller = authorize(auth!, caller, request));
    const denied = callerRefusal(auth!, final);
    if (denied) return refuse(x, denied);
    auth!.record(final, x.route, x.req);
  }
  const answer = (decision: Decision) => {
    if (x.res.headersSent) return;
    const warnings = respond(x.res, request, decision, x.opts.shuttingDown?.() ?? false);
    const seconds = (performance.now() - x.started) / 1000;
    observeDecision(x.route, decision, warnings, seconds);
    logDecision(x.opts.logger, x.route, request, decision, seconds);
    if (x.opts.outcomes && x.route === 'validate') recordOutcome(x.opts.outcomes, request, decision);
  };
  if (x.route === 'observe') {
    try {
      x.opts.observeTokenRequest?.(request);
    } catch (err) {
      x.log.log('error', 'observe_failed', 'recording a TokenRequest failed', { uid: request.uid, error: errorStack(err) });
    }
    return answer(OBSERVED);
  }
  evaluate(x.opts.engine(), x.route, request, x.log, answer);
}

/** The pipeline: `route` is the admission route the request's method and path name. */
export function createAdmissionPipeline(opts: AdmissionPipelineOptions) {
  const log = opts.limitedLog ?? new RateLimitedLog(opts.logger);
  return function admit(route: AdmissionRoute, req: IncomingMessage, res: ServerResponse): void {
    const x: Exchange = { opts, route, req, res, started: performance.now(), log, caller: undefined };
    const auth = opts.callerAuth;
    const verdict = auth?.authenticate(route, req);
    // Judged once the body is in; if it never is (too large, the client went away), a failure of
    // the verification must not become an unhandled rejection.
    if (verdict instanceof Promise) verdict.catch(() => {});
    const refused = (verdict && !(verdict instanceof Promise) ? callerRefusal(auth!, verdict) : undefined) ?? headerRefusal(req, opts.maxBodyBytes);
    if (refused) {
      if (!refused.close) req.resume();
      return refuse(x, refused);
    }
    if (expectsContinue(req)) res.writeContinue(); // every check that needs no body has passed
    req.on('error', (err) => log.log('warn', 'request_stream_error', 'request stream error', { route, error: err.message, address: req.socket.remoteAddress ?? 'unknown' }));
    readBody(req, opts.maxBodyBytes, (body) => {
      if (isRefusal(body)) return refuse(x, body);
      if (verdict instanceof Promise) verdict.then((v) => review(x, body, v), (err: unknown) => review(x, body, unverifiable(x, err)));
      else review(x, body, verdict);
    });
  };
}

/**
 * One line per review: at info when a policy had something to say (a denial, a warning, any
 * finding), at debug for a plain allow or a patch without findings. Those are most reviews; a
 * line for each is log volume (hundreds of bytes per review, thousands of reviews a second) that
 * says nothing the metrics do not (and a patch is in the API server's audit log), and assembling
 * and writing it cost about 5 us of each review's 50 to 70 (measured with npm run bench).
 * Gatekeeper and Kyverno log only what they act on, too.
 */
function logDecision(logger: Logger, route: AdmissionRoute, r: AdmissionRequest, d: Decision, seconds: number): void {
  const decision = d.allowed ? (d.patch ? 'patched' : d.warnings.length ? 'warned' : 'allowed') : 'denied';
  const level = (decision === 'allowed' || decision === 'patched') && d.findings.length === 0 ? 'debug' : 'info';
  if (!logger.enabled(level)) return;
  // Assembled by hand (the one line per review): route, operation and decision are our own
  // constants or ajv-checked enums; every other string goes through jsonString.
  let members =
    `"uid":${jsonString(r.uid)},"route":"${route}","kind":${jsonString(r.kind.kind)},` +
    `"resource":${jsonString(r.resource.resource)},"namespace":${jsonString(r.namespace ?? '')},` +
    `"name":${jsonString(objectName(r))},"operation":"${r.operation}","user":${jsonString(r.userInfo.username ?? '')},` +
    `"dryRun":${r.dryRun === true},"decision":"${decision}","policies":[${d.fired.map(jsonString).join(',')}]`;
  if (d.findings.length) {
    const optional = (key: string, value: string | undefined) => (value === undefined ? '' : `,"${key}":${jsonString(value)}`);
    const findings = d.findings.map(
      (f) =>
        `{"policy":${jsonString(f.policy)},"severity":"${f.severity}","mode":"${f.mode}"${optional('path', f.path)},` +
        `"message":${jsonString(f.message)}${optional('detail', f.detail)}}`,
    );
    members += `,"findings":[${findings.join(',')}]`;
  }
  members += `,"latencyMs":${Math.round(seconds * 1e6) / 1e3}`;
  logger.members(level, 'admission decision', members);
}
