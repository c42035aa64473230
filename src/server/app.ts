// Everything that is not the admission hot path: health, readiness, metrics and clear errors.

import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import type { Readiness } from '../observability/readiness.js';
import { registry } from '../observability/metrics.js';
import { ADMISSION_ROUTES, ROUTES } from '../admission/routes.js';
import { OBSERVER_STATE_PATH, type ObserverState } from '../cluster/token-observer-state.js';

const ADMISSION_PATHS = ROUTES.map((r) => ADMISSION_ROUTES[r].path);

/**
 * `observerState`: what `GET /observer` answers (the token refresh observer's last report; absent:
 * no such route). Like /metrics it is not behind caller authentication, which proves the API server
 * is the caller of a review: `tokenguard audit` reads it through the API server's service proxy,
 * which forwards neither the user's credentials nor a client certificate (RBAC on `services/proxy`
 * decides who may ask), and it holds names and times, never a token.
 */
export function createApp(readiness: Readiness, observerState?: () => ObserverState): Express {
  const routeList = [...ADMISSION_PATHS.map((p) => `POST ${p}`), 'GET /healthz', 'GET /readyz', 'GET /metrics', ...(observerState ? [`GET ${OBSERVER_STATE_PATH}`] : [])].join(', ');
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');

  app.get('/healthz', (_req, res) => {
    res.json({ ok: true });
  });

  app.get('/readyz', (_req, res) => {
    const report = readiness.report();
    res.status(report.ready ? 200 : 503).json(report);
  });

  app.get('/metrics', async (_req, res, next) => {
    try {
      const text = await registry.metrics();
      res.type(registry.contentType).send(text);
    } catch (err) {
      next(err);
    }
  });

  if (observerState) {
    app.get(OBSERVER_STATE_PATH, (_req, res) => {
      res.set('cache-control', 'no-store');
      res.json(observerState());
    });
  }

  // POSTs to the admission routes never get here (see admission-pipeline.ts): any other method does.
  // (A POST lands here only for a variant such as `/validate/`: that is an unknown route.)
  app.all(ADMISSION_PATHS, (req, res, next) => {
    if (req.method === 'POST') return next();
    res.set('allow', 'POST');
    res.status(405).json({ error: { code: 405, message: `method ${req.method} not allowed on ${req.path}: use POST with an AdmissionReview` } });
  });

  app.use((req, res) => {
    res.status(404).json({ error: { code: 404, message: `no route ${req.method} ${req.path}; routes: ${routeList}` } });
  });

  app.use((err: Error, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).json({ error: { code: 500, message: `internal error: ${err.message}` } });
  });
  return app;
}
