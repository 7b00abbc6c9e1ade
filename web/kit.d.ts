// Types for the element kit (kit.js) and the stream's payloads (schema.json says the same
// as JSON Schema). Copy this file into a TypeScript app, or reference it:
//   /// <reference path="./kit.d.ts" />

export type UpstreamStatus = "connecting" | "starting" | "connected" | "disconnected" | "auth_invalid";
export type StatusCause = "home_assistant" | "redis";
/** [epoch_seconds, value], oldest first */
export type Point = [number, number];

export interface EntityState {
  entity_id: string;
  state: string;
  attributes: Record<string, unknown>;
  last_changed: string;
  last_updated: string;
  last_reported?: string;
  context?: Record<string, unknown>;
}

export interface StreamEvents {
  snapshot: {
    status: UpstreamStatus;
    reason: string;
    cause: StatusCause;
    heartbeat?: number;
    /** false: this viewer's key or token may call no service (a read-only screen). */
    can_call?: boolean;
    entities: Record<string, EntityState>;
    history: Record<string, Point[]>;
  };
  state: EntityState;
  remove: { entity_id: string };
  status: { status: UpstreamStatus; reason: string; cause: StatusCause; since: string };
  history: { history: Record<string, Point[]> };
  ping: Record<string, never>;
  busy: { code: string; message: string; retry_ms: number };
  expired: { code: "token_expired"; message: string; expired_at: string; retry_ms: number };
  revoked: { code: "token_revoked"; message: string };
}
export type StreamEventName = keyof StreamEvents;

/** 200 from POST /api/services/<domain>/<service> */
export interface CommandAnswer {
  ok: true;
  service: string;
  entity_id: string[];
  context_id?: string;
  response?: unknown;
}
/** Every error answer of the bridge */
export interface ErrorAnswer {
  error: { code: string; message: string };
}

/** What the kit dispatches on `document` for each event of a page's stream. */
export type LiveEvent = CustomEvent<{ [N in StreamEventName]: { name: N; id: string; data: StreamEvents[N] } }[StreamEventName]>;

export interface LiveElement extends HTMLElement {
  /** The entity shown; the key comes from data-key on the script or on a wrapping element. */
  entity: string;
  readonly state: EntityState | undefined;
}
/** The state (or an attribute) with its unit, numbers in the page's locale (the nearest lang); data-value is the text shown. */
export interface LiveValueElement extends LiveElement {}
/** The entity's chart with its history and a 1 h / 6 h / 24 h switch; range="3600|21600|86400". */
export interface LiveChartElement extends LiveElement {}
/** A switch calling turn_on / turn_off; data-phase is "pending" | "confirmed" | "failed"; disabled, "read-only", when the snapshot's can_call is false. */
export interface LiveToggleElement extends LiveElement {}
/** The connection; data-state is "connecting" | "live" | "reconnecting" | "down" | "refused". */
export interface LiveStatusElement extends HTMLElement {}

/** Attributes, for JSX (React 19 and Next.js pass them to custom elements as they are). */
export interface LiveValueAttributes { entity: string; attribute?: string; digits?: number | string; unit?: string; label?: string }
export interface LiveChartAttributes { entity: string; range?: 3600 | 21600 | 86400 | string; label?: string }
export interface LiveToggleAttributes { entity: string; label?: string }

declare global {
  interface HTMLElementTagNameMap {
    "live-value": LiveValueElement;
    "live-chart": LiveChartElement;
    "live-toggle": LiveToggleElement;
    "live-status": LiveStatusElement;
  }
  interface DocumentEventMap {
    "live-event": LiveEvent;
  }
}

type Common = { id?: string; className?: string; class?: string; hidden?: boolean; lang?: string; "data-key"?: string; children?: unknown };
declare module "react" {
  namespace JSX {
    interface IntrinsicElements {
      "live-value": LiveValueAttributes & Common;
      "live-chart": LiveChartAttributes & Common;
      "live-toggle": LiveToggleAttributes & Common;
      "live-status": Common;
    }
  }
}
