/** A certificate bundle that cannot be served; `check` names the check that failed. */
export class CertificateError extends Error {
  readonly code = 'GW_CERTIFICATE';

  constructor(
    readonly check:
      | 'unparsable PEM'
      | 'no certificate'
      | 'no private key'
      | 'several keys'
      | 'encrypted key'
      | 'key does not match'
      | 'unsupported key'
      | 'not servable'
      | 'not yet valid'
      | 'expired'
      | 'name not covered',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CertificateError';
  }
}
