// The hot path: POST /validate and POST /mutate. It runs on the raw node:http request, ahead of
// express, because express's per-request pipeline (and body-parser's) costs more than half of
// the throughput a bare server reaches; everything else (health, metrics, errors) stays in express.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Engine } from '../admission/engine.js';
import { DecodeError, decodeReview, objectName, type AdmissionRequest } from '../admission/review.js';
import { fromDecision, reviewJson } from '../admission/response.js';
import type { CallerAuth, Verdict } from './caller-auth.js';
import { lingerBeforeClose } from './lingering-close.js';
import { jsonString, type Logger } from '../observability/log.js';
import { observeDecision, observeInvalid } from './admission-metrics.js';
import type { Decision } from '../admission/policy.js';
import { errorMessage, errorStack } from '../observability/errors.js';

export type AdmissionRoute = 'validate' | 'mutate';

export interface AdmissionHandlerOptions {
  engine: () => Engine;
  logger: Logger;
  maxBodyBytes: number;
  /** Who may call (config `server.callerAuth`); absent when its mode is off. */
  callerAuth?: CallerAuth;
  /** True once shutdown began: a review answered from then on closes its connection. */
  shuttingDown?: () => boolean;
}

/** `/validate?timeout=10s` -> 'validate' (the API server appends its timeout as a query). */
export function admissionRoute(method: string | undefined, url: string | undefined): AdmissionRoute | undefined {
  if (method !== 'POST' || !url) return undefined;
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  return path === '/validate' ? 'validate' : path === '/mutate' ? 'mutate' : undefined;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, close = false, extra?: Record<string, string>): void {
  sendText(res, status, JSON.stringify(body), close, extra);
}

/** Answer with JSON text already serialised. */
function sendText(res: ServerResponse, status: number, text: string, close = false, extra?: Record<string, string>): void {
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...extra,
  };
  if (close) headers.connection = 'close';
  res.writeHead(status, headers);
  res.end(text);
}

export function sendError(res: ServerResponse, status: number, message: string, close = false, extra?: Record<string, string>): void {
  sendJson(res, status, { error: { code: status, message } }, close, extra);
}

/** `Expect: 100-continue`: node leaves the `100 Continue` to us (see the server's checkContinue). */
export function expectsContinue(req: IncomingMessage): boolean {
  return req.headers.expect?.toLowerCase() === '100-continue';
}

function isJsonContentType(value: string | undefined): boolean {
  if (!value) return false;
  const semi = value.indexOf(';');
  return (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase() === 'application/json';
}

export function createAdmissionHandler(opts: AdmissionHandlerOptions) {
  const { logger, maxBodyBytes } = opts;

  return function handleAdmission(route: AdmissionRoute, req: IncomingMessage, res: ServerResponse): void {
    const started = performance.now();
    const answerError = (status: number, message: string, close = false, extra?: Record<string, string>) => {
      // Answered before the whole body arrived: if the connection closes after this answer, it
      // closes only once the rest is drained, so the client can read it.
      if (!req.complete) lingerBeforeClose(req);
      observeInvalid(route);
      sendError(res, status, message, close, extra);
    };
    const fail = (status: number, message: string, close = false) => {
      logger.warn('rejected admission request', { route, status, error: message });
      answerError(status, message, close);
    };

    // The caller first, from its headers and TLS session: in enforce, an unauthenticated caller
    // learns nothing of the review (not even whether its body decodes), only why it was refused.
    const auth = opts.callerAuth;
    const verdict = auth?.authenticate(route, req);
    // Judged once the body is in; if it never is (too large, the client went away), a failure of
    // the verification must not become an unhandled rejection.
    if (verdict instanceof Promise) verdict.catch(() => {});
    const refuse = (v: Verdict) => {
      auth!.record(v, route, req); // logs the caller once a minute: a refused flood must not flood the log
      answerError(401, `caller not authenticated: ${v.reason}`, false, { 'www-authenticate': 'Bearer' });
    };
    if (verdict && !(verdict instanceof Promise) && verdict.result !== 'ok' && auth!.mode === 'enforce') {
      req.resume();
      return refuse(verdict);
    }
    if (!isJsonContentType(req.headers['content-type'])) {
      req.resume();
      return fail(415, `Content-Type must be application/json, got ${JSON.stringify(req.headers['content-type'] ?? '')}`);
    }
    const declared = Number(req.headers['content-length']);
    if (declared > maxBodyBytes) {
      // Refused before the body is read (with `Expect: 100-continue`, no 100 Continue is sent: the
      // client need not send it at all). The connection closes once what still arrives is drained.
      return fail(413, `request body of ${declared} bytes exceeds the limit of ${maxBodyBytes} bytes`, true);
    }
    // Every check that needs no body has passed: now the client may send it.
    if (expectsContinue(req)) res.writeContinue();

    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      if (tooLarge) return;
      size += chunk.length;
      if (size > maxBodyBytes) {
        tooLarge = true;
        chunks.length = 0;
        fail(413, `request body exceeds the limit of ${maxBodyBytes} bytes`, true);
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', (err) => logger.warn('request stream error', { route, error: err.message }));
    req.on('end', () => {
      if (tooLarge) return;
      if (verdict instanceof Promise) {
        verdict.then(
          (v) => (v.result !== 'ok' && auth!.mode === 'enforce' ? refuse(v) : review(v)),
          (err) => {
            // Verification itself broke (a bug): an unauthenticated caller is not let through on it.
            logger.error('caller authentication failed unexpectedly', { error: errorStack(err) });
            const v: Verdict = { method: 'bearer_token', result: 'invalid_signature', reason: 'the token could not be verified' };
            if (auth!.mode === 'enforce') refuse(v);
            else review(v);
          },
        );
      } else review(verdict);
    });

    /** The body is in and the caller known (or not checked): decode and judge the review. */
    const review = (caller: Verdict | undefined) => {
      if (size === 0) return fail(400, 'empty body: expected an admission.k8s.io/v1 AdmissionReview');
      let body: unknown;
      try {
        body = JSON.parse(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks, size).toString('utf8'));
      } catch (err) {
        return fail(400, `body is not valid JSON: ${errorMessage(err)}`);
      }
      let request: AdmissionRequest;
      try {
        request = decodeReview(body).request;
      } catch (err) {
        if (caller) auth!.record(caller, route, req);
        return fail(err instanceof DecodeError ? err.status : 400, errorMessage(err));
      }
      if (caller) {
        // A KEP-6060 token may only ask about the API group it attests.
        const attested = caller.bound ? auth!.checkAttestation(caller, request) : caller;
        if (attested.result !== 'ok' && auth!.mode === 'enforce') return refuse(attested);
        auth!.record(attested, route, req);
      }
      const engine = opts.engine();
      const answer = (decision: Decision) => {
        const response = fromDecision(request.uid, decision);
        // Checked at answer time: a slow review that began before shutdown must not keep its connection.
        sendText(res, 200, reviewJson(response), opts.shuttingDown?.() ?? false);
        const seconds = (performance.now() - started) / 1000;
        observeDecision(route, decision, response.warnings?.length ?? 0, seconds);
        logDecision(logger, route, request, decision, seconds);
      };
      // The engine contains policy failures itself; getting here is a bug. Fail open, loudly, and
      // never let it escape: an exception here would take the process down for every request.
      const failOpen = (err: unknown) => {
        logger.error('engine failed', { uid: request.uid, error: errorStack(err) });
        if (res.headersSent) return;
        answer({
          allowed: true,
          warnings: ['tokenguard: internal error, request not checked; see the tokenguard logs'],
          auditAnnotations: {},
          findings: [],
          fired: [],
        });
      };
      const respond = (decision: Decision) => {
        try {
          answer(decision);
        } catch (err) {
          failOpen(err);
        }
      };
      try {
        if (route === 'mutate') respond(engine.mutate(request));
        else {
          const decision = engine.validate(request);
          if (decision instanceof Promise) decision.then(respond, failOpen);
          else respond(decision);
        }
      } catch (err) {
        failOpen(err);
      }
    };
  };
}

/**
 * One line per review: at info when a policy had something to say (a denial, a warning, any
 * finding), at debug for a plain allow or a patch without findings. Those are most reviews; a
 * line for each is log volume (hundreds of bytes per review, thousands of reviews a second) that
 * says nothing the metrics do not (and a patch is in the API server's audit log), and assembling
 * and writing it cost about 5 us of each review's 50 to 70 (measured with npm run bench). Gatekeeper and Kyverno
 * log only what they act on, too.
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
