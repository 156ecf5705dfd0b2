// Type declarations for the tidings browser client (static/realtime-client.js,
// served at /realtime/client.js). See docs/client.md.

/** Protocol version this client speaks. */
export declare const PROTOCOL_VERSION: 1;

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "closed";

/** Why the token function is being called. */
export type TokenReason =
  /** first connection */
  | "connect"
  /** reconnecting after a drop */
  | "reconnect"
  /** the server closed with 4001: the last token is no good */
  | "unauthorized"
  /** the server sent `refresh_required`: the token expires soon */
  | "refresh";

export type TokenOption =
  | string
  | null
  | ((context: { reason: TokenReason }) => string | null | undefined | Promise<string | null | undefined>);

/** Server error codes (protocol section 3.3) and the client's own codes. */
export type RealtimeErrorCode =
  | "bad_request"
  | "unauthorized"
  | "forbidden"
  | "invalid_pattern"
  | "rate_limited"
  | "limit_exceeded"
  | "not_found"
  | "auth_mismatch"
  | "internal"
  // fatal close codes
  | "message_too_big"
  | "protocol_misuse"
  // client-side
  | "closed"
  | "queue_full"
  | "disconnected"
  | "unsubscribed"
  | "callback_error"
  | "token_error"
  | "connect_error"
  | "send_failed"
  | "bad_frame"
  | (string & {});

export declare class RealtimeError extends Error {
  constructor(code: RealtimeErrorCode, message?: string, details?: Record<string, unknown>);
  readonly name: "RealtimeError";
  /** Machine-readable code: the server's error code, or one of the client's. */
  code: RealtimeErrorCode;
  /** The WebSocket close code, for errors caused by a close. */
  closeCode?: number;
  /** The close reason text, for errors caused by a close. */
  reason?: string;
  /** The server frame that caused the error, if any. */
  frame?: ServerFrame;
  /** The `ref` of the client frame the server refused, if any. */
  ref?: number | string;
  /** The subscription id concerned, if any. */
  id?: string;
  /** The subscription concerned (callback errors, refused or ended subscriptions). */
  subscription?: Subscription;
  /** The exception a callback threw, or the token function's failure. */
  cause?: unknown;
}

export interface RealtimeClientOptions {
  /** A JWT, null for anonymous, or a function (sync or async) that returns one. Default null. */
  token?: TokenOption;
  /** Smallest reconnect delay in ms. Default 500. */
  minDelay?: number;
  /** Largest reconnect delay in ms. Default 30000. */
  maxDelay?: number;
  /** A connection that stays up this long (ms) resets the backoff. Default 5000. */
  stableAfter?: number;
  /** Send a ping after this long (ms) without any frame from the server. Default 20000. */
  pingInterval?: number;
  /** No frame within this long (ms) after a ping: the connection is dead. Default 10000. */
  pongTimeout?: number;
  /** Give up on an attempt without `welcome` after this long (ms). Default 10000. */
  connectTimeout?: number;
  /** Most publishes and new subscriptions that may wait for a connection. Default 100. */
  queueLimit?: number;
  /** Smallest wait (ms) after close code 4029. Default 30000. */
  rateLimitDelay?: number;
  /** How long `request()` waits for its `reply` by default (ms). Default 15000. */
  requestTimeout?: number;
  /** WebSocket constructor to use (tests, non-browser runtimes). Default globalThis.WebSocket. */
  WebSocket?: new (url: string) => WebSocketLike;
  /** Timer functions to use (tests). Default the global ones and Date.now. */
  timers?: { setTimeout?: (fn: () => void, ms: number) => unknown; clearTimeout?: (id: any) => void; now?: () => number };
  /** Random source in [0, 1) for jitter (tests). Default Math.random. */
  random?: () => number;
  /** Where to listen for `online` (null: nowhere). Default globalThis.window. */
  window?: EventTargetLike | null;
  /** Where to listen for `visibilitychange` (null: nowhere). Default globalThis.document. */
  document?: (EventTargetLike & { visibilityState?: string }) | null;
}

export interface EventTargetLike {
  addEventListener(type: string, listener: (ev: any) => void): void;
  removeEventListener(type: string, listener: (ev: any) => void): void;
}

export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
}

/**
 * `enter` and `leave` (additions): an update moved the record into or out of what the
 * subscription sees (its filter, or a per-record read rule such as the owner).
 */
export type EventAction = "create" | "update" | "delete" | "broadcast" | "enter" | "leave";

/** A JSON scalar a filter compares with. */
export type FilterScalar = string | number | boolean | null;

/** One field's condition: equality with a scalar, or one operator. */
export type FilterCondition =
  | FilterScalar
  | { eq: FilterScalar }
  | { neq: FilterScalar }
  | { lt: FilterScalar }
  | { lte: FilterScalar }
  | { gt: FilterScalar }
  | { gte: FilterScalar }
  | { in: FilterScalar[] };

/**
 * A subscription filter (protocol section 3.5): public field name -> condition, all
 * of them must hold. Values compare within one JSON type only.
 */
export type Filter = Record<string, FilterCondition>;

/** An `event` frame (protocol section 3.3). */
export interface RealtimeEvent<R = Record<string, unknown>, D = unknown> {
  type: "event";
  /** Ids of this connection's subscriptions that matched; empty for direct events. */
  subs: string[];
  /** "<epoch>:<seq>", or null for events sent to users or connections. */
  cursor: string | null;
  topic: string | null;
  collection: string | null;
  key: string | null;
  action: EventAction;
  /**
   * The record's public projection (create, update, delete, enter); `null` for
   * `leave`, which carries the record id in `key` only.
   */
  record?: R | null;
  /** Changed field names (update). */
  changes?: string[] | null;
  /** Custom event name (broadcast). */
  event?: string;
  /** Custom event data (broadcast). */
  data?: D;
  /**
   * The client mutation id of the write or publish that caused the event (addition):
   * `X-Tidings-Mutation` on the reference server's REST API, `Tx::set_mutation` in
   * Rust, `publish(..., { mutation })` here. Absent when none was given.
   */
  mutation?: string;
  /**
   * Who caused the event (addition): the server, or a client (with its user id where
   * the collection shows publishers).
   */
  source?: RealtimeEventSource;
  ts: string;
  [field: string]: unknown;
}

/** Who caused an event: `{kind: "server"}` or `{kind: "client", user_id?}`. */
export type RealtimeEventSource = { kind: "server" } | { kind: "client"; user_id?: string };

export interface WelcomeFrame {
  type: "welcome";
  connection_id: string;
  user_id: string | null;
  expires_in: number | null;
  protocol: number;
  ref?: number | string;
}

export type ResyncReason = "epoch_changed" | "too_old" | "too_many" | "unknown_position" | (string & {});

export interface SubscribedFrame {
  type: "subscribed";
  id: string;
  pattern: string;
  cursor: string;
  /** Present only when the subscribe carried `since`. */
  recovered?: boolean;
  reason?: ResyncReason;
  ref?: number | string;
}

export interface UnsubscribedFrame {
  type: "unsubscribed";
  id: string;
  reason?: string;
  ref?: number | string;
}

export interface PublishedFrame {
  type: "published";
  cursor?: string | null;
  ref?: number | string;
}

export interface RefreshedFrame {
  type: "refreshed";
  expires_in: number | null;
  ref?: number | string;
}

/** A presence member in a `presence` frame (protocol section 3.4). */
export interface PresenceUser {
  user_id: string;
  /** The user's connections to the topic on every node (0 while its leave waits for the grace). */
  connections: number;
}

/** Who is on a topic: the reply to `presence()` (with `ref`) or a subscription's starting listing (with `id`). */
export interface PresenceFrame {
  type: "presence";
  id?: string;
  topic: string;
  users: PresenceUser[];
  /** Every connection, anonymous ones included. */
  connections: number;
  /** Set when `users` was cut at the server's `presence.max_users_listed`. */
  truncated?: boolean;
  ref?: number | string;
}

/** A user's first connection to the topic appeared (`join`) or its last one went away (`leave`). */
export interface PresenceChangeFrame {
  type: "join" | "leave";
  /** The subscription told. */
  id: string;
  topic: string;
  user_id: string;
}

export interface ErrorFrame {
  type: "error";
  code: string;
  message: string;
  id?: string;
  ref?: number | string;
}

export type ServerFrame =
  | WelcomeFrame
  | SubscribedFrame
  | UnsubscribedFrame
  | PublishedFrame
  | RefreshedFrame
  | ErrorFrame
  | PresenceFrame
  | PresenceChangeFrame
  | RealtimeEvent
  | { type: "pong"; ref?: number | string }
  | { type: "refresh_required"; expires_in: number };

/** Second argument of "state" listeners. */
export interface StateInfo {
  /** closed / reconnecting: the close code that caused it (null when no socket closed, e.g. the token function failed). */
  code?: number | null;
  /** closed / reconnecting: the close reason. */
  reason?: string;
  /** reconnecting: how many consecutive failures so far. */
  attempt?: number;
  /** reconnecting: ms until the next attempt. */
  delay?: number;
  /** closed: the error that stopped the client, if any. */
  error?: RealtimeError | null;
  /** connected */
  connectionId?: string | null;
  /** connected */
  userId?: string | null;
  /** connected: seconds until the token expires, or null. */
  expiresIn?: number | null;
}

export interface RetryInfo {
  attempt: number;
  delay: number;
  code: number | null;
  reason: string;
}

export interface ClientEvents {
  state: (state: ConnectionState, info: StateInfo) => void;
  error: (error: RealtimeError) => void;
  /** A reconnect attempt was scheduled. */
  retry: (info: RetryInfo) => void;
  /** An event sent to this user or connection rather than to a subscription (`subs` empty). */
  direct: (event: RealtimeEvent) => void;
  /** The server accepted a refreshed token. */
  refreshed: (frame: RefreshedFrame) => void;
}

export interface SubscribeOptions {
  /** Called when a resume could not be served: refetch your data, live events follow. */
  onResync?: (reason: ResyncReason, frame: SubscribedFrame) => void;
  /** Called when the server refuses or ends the subscription. */
  onError?: (error: RealtimeError) => void;
  /** Start from this cursor instead of now (e.g. one saved from an earlier page). */
  since?: string | null;
  /**
   * Only record events whose public fields meet this filter; updates that move a
   * record in or out arrive as `enter` / `leave`. Kept across reconnects.
   */
  filter?: Filter | null;
  /** Be a member of the topic's presence and track who else is (implied by `onPresence`). */
  presence?: boolean;
  /**
   * With presence: called with the user ids on the topic (sorted) after the server's
   * listing (on every (re)subscribe) and after each `join` / `leave`.
   */
  onPresence?: (users: string[], frame: PresenceFrame | PresenceChangeFrame) => void;
}

export declare class Subscription<R = Record<string, unknown>> {
  /** Client-chosen id (sent as `id`). */
  readonly id: string;
  readonly pattern: string;
  /** The filter sent with every (re)subscribe, or null. */
  readonly filter: Filter | null;
  /** Settles with the first `subscribed` frame, or rejects with a RealtimeError (its `code` is the server's). */
  readonly ready: Promise<SubscribedFrame>;
  /** Last cursor delivered to the callback (or the start position): the `since` of the next resume. */
  readonly cursor: string | null;
  /** False once unsubscribed, refused, ended by the server, or the client closed. */
  readonly active: boolean;
  /** With presence: the user ids on the topic, sorted; null before the first listing or without presence. */
  readonly presence: string[] | null;
  /** Stops delivery at once; settles with the `unsubscribed` frame (null when no server round trip was needed). */
  unsubscribe(): Promise<UnsubscribedFrame | null>;
}

export declare class RealtimeClient {
  constructor(url: string, options?: RealtimeClientOptions);
  readonly url: string;
  readonly state: ConnectionState;
  /** Server-assigned id of the current connection. */
  readonly connectionId: string | null;
  /** `sub` of the authenticated principal, null when anonymous. */
  readonly userId: string | null;
  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof ClientEvents>(type: K, listener: ClientEvents[K]): () => void;
  off<K extends keyof ClientEvents>(type: K, listener: ClientEvents[K]): void;
  subscribe<R = Record<string, unknown>>(
    pattern: string,
    onEvent: (event: RealtimeEvent<R>) => void | Promise<void>,
    options?: SubscribeOptions,
  ): Subscription<R>;
  /** Settles with the `published` frame, or rejects with a RealtimeError. */
  /** `options.mutation`: a client mutation id (1-128 characters) the event carries as `mutation`. */
  publish(topic: string, event: string, data?: unknown, options?: { mutation?: string }): Promise<PublishedFrame>;
  /** Who is on a topic, without subscribing; rejects with a RealtimeError (e.g. `forbidden`, `disconnected`). */
  presence(topic: string): Promise<PresenceFrame>;
  /**
   * Asks the app's handler for `topic` (addition): settles with the `reply` frame's
   * `data`, or rejects with a RealtimeError (the server's code, `timeout`,
   * `disconnected`, `closed`). `options.timeout` (ms) defaults to `requestTimeout`.
   */
  request<T = unknown>(topic: string, event: string, data?: unknown, options?: { timeout?: number }): Promise<T>;
  /** Reconnect now if an attempt is waiting (not before a 4029 wait is over). */
  reconnect(): void;
  /** Closes for good. */
  close(): void;
}

/** Reconnect delay after the n-th consecutive failure: uniform in [minDelay, min(maxDelay, minDelay*2^n)]. */
export declare function backoffDelay(n: number, minDelay: number, maxDelay: number, random?: () => number): number;

/** -1, 0, 1, or null when the cursors are not comparable (different epochs). */
export declare function compareCursors(a: string | null, b: string | null): -1 | 0 | 1 | null;

export default RealtimeClient;
