// Install sources as the service wants them (API.md "Sources").

const SCHEMES = ["oci://", "docker://", "container://", "http://", "https://", "file://"];

/** The source as typed, with a bare registry reference taken as OCI (`oci://` added). */
export function normalizeSource(input: string): string {
  const source = input.trim();
  if (!source || SCHEMES.some((s) => source.startsWith(s)) || source.startsWith("catalog:")) {
    return source;
  }
  return `oci://${source}`;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** Whether `digest` is the `sha256:<64 hex>` the `digest` option takes. */
export function isDigest(digest: string): boolean {
  return DIGEST.test(digest);
}
