import type { Command, Publication, WirePublication } from "./types.js";

/** Bytes to base64 (RFC 4648, padded), in browsers and Node alike. */
export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  // In chunks: String.fromCharCode(...bytes) on a large array would pass the engine's argument limit.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Base64 to bytes. */
export function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) {
    bytes[i] = binary.charCodeAt(i);
  }
  return bytes;
}

/**
 * A command as `herald.json` and `POST /cmd` carry it: bytes to publish (`data` a Uint8Array) go as `"b64"` in place of
 * `data`. Over `herald.msgpack` the command goes as it is, and the bytes as a `bin`.
 */
export function toJsonCommand(command: Command): Command {
  if (!(command.data instanceof Uint8Array)) {
    return command;
  }
  const { data, ...rest } = command;
  return { ...rest, b64: toBase64(data) };
}

const encoder = new TextEncoder();

/**
 * A publication as the application sees it, from its wire form: bytes from `"b64"` (JSON encodings) or a `bin`
 * (MessagePack) in `bytes` with `binary: true`; a JSON value in `data`, and its UTF-8 JSON text in `bytes`, made on
 * first read.
 */
export function toPublication(pub: WirePublication): Publication {
  const info = pub.info !== undefined ? { info: pub.info } : {};
  if (typeof pub.b64 === "string") {
    return { offset: pub.offset, data: undefined, binary: true, bytes: fromBase64(pub.b64), ...info };
  }
  if (pub.data instanceof Uint8Array) {
    return { offset: pub.offset, data: undefined, binary: true, bytes: pub.data, ...info };
  }
  const data = pub.data;
  let bytes: Uint8Array | undefined;
  const publication = { offset: pub.offset, data, binary: false, ...info } as Publication;
  Object.defineProperty(publication, "bytes", {
    enumerable: true,
    get: () => (bytes ??= encoder.encode(JSON.stringify(data))),
  });
  return publication;
}
