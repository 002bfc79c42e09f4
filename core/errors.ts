/** Stable error codes: callers decide what to do from the code, users read the message. */
export type MeshErrorCode =
  | 'CONFIG_INVALID'
  | 'CREDENTIALS_MISSING'
  | 'ILLEGAL_TRANSITION'
  | 'DOCUMENT_MALFORMED'
  | 'CONFLICT'
  | 'NOT_FOUND'
  | 'SERVER_UNREACHABLE'
  | 'SERVER_ERROR'
  /** A server answered 2xx with something that is not a JSON object of the expected shape. */
  | 'BAD_RESPONSE'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'LEASE_LOST'
  | 'STEP_FAILED'
  | 'STEP_TIMEOUT'
  | 'BAD_INPUT'
  | 'SSH_HOST_KEY_MISMATCH'
  | 'SSH_FAILED'
  | 'TRANSFER_FAILED'
  /** The batch system refused a submission or could not be asked. */
  | 'BATCH_FAILED'
  /** A process this command started exited, or did not become ready in time. */
  | 'PROCESS_FAILED'
  | 'ABORTED';

export class MeshError extends Error {
  readonly code: MeshErrorCode;
  /** HTTP status when the error came from a CouchDB-compatible server. */
  readonly statusCode?: number;
  /** CouchDB's own `reason`, kept verbatim. */
  readonly reason?: string;

  constructor(code: MeshErrorCode, message: string, options: { cause?: unknown; statusCode?: number; reason?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MeshError';
    this.code = code;
    this.statusCode = options.statusCode;
    this.reason = options.reason;
  }
}

export function isMeshError(error: unknown, code?: MeshErrorCode): error is MeshError {
  return error instanceof MeshError && (code === undefined || error.code === code);
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
