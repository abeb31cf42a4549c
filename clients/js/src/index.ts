export { HeraldClient } from "./client.js";
export { Subscription } from "./subscription.js";
export type { SubscriptionState } from "./subscription.js";
export { ClientErrorCodes, CloseCodes, ErrorCodes, HeraldError, isFatal, isNoReconnect, isTransient } from "./codes.js";
export type { ClientErrorCode, CloseCode, ErrorCode } from "./codes.js";
export { ConnectionState, TransportName } from "./types.js";
export type {
  ClientInfo,
  ErrorEvent,
  EventSourceConstructor,
  EventSourceLike,
  HeraldClientOptions,
  HeraldEventMap,
  HistoryOptions,
  HistoryResult,
  PublishOptions,
  PresenceEntry,
  PresenceInfo,
  PresenceResult,
  Protocol,
  Publication,
  PublicationEvent,
  PublishResult,
  RecoveryEvent,
  SkippedEvent,
  SkippedRange,
  ServerSubscriptionEvent,
  StateEvent,
  StreamPosition,
  SubscriptionEventMap,
  WebSocketConstructor,
  WebSocketLike,
} from "./types.js";
