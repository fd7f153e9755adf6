import type { RouteSpec } from './routing-state.js';

/**
 * The whole route table as it travels to a worker process: one UTF-8 buffer, a line per route with
 * its fields separated by tabs (fqdn, cluster, rewrite or empty, source, members separated by commas).
 * Cloning 100,000 spec objects made a 14 MB message and as many objects again on each side, all
 * garbage a moment later; this is a 6 MB buffer the worker reads one route at a time.
 */

const FIELD = 0x09; // \t
const LINE = 0x0a; // \n

/** Encodes specs for {@link decodeRouteSpecs}. Throws on a field holding a separator (validated state never does). */
export function encodeRouteSpecs(specs: Iterable<RouteSpec>): Buffer {
  const lines: string[] = [];
  for (const spec of specs) {
    const fields = [spec.fqdn, spec.cluster, spec.rewrite ?? '', spec.source];
    for (const field of fields) checkField(field, spec.fqdn);
    for (const member of spec.members) {
      checkField(member, spec.fqdn);
      if (member.includes(',') || member === '') throw new Error(`route ${JSON.stringify(spec.fqdn)}: member ${JSON.stringify(member)} cannot be encoded`);
    }
    fields.push(spec.members.join(','));
    lines.push(fields.join('\t'));
  }
  return Buffer.from(lines.join('\n'), 'utf8');
}

/** The specs of an encoded table, one at a time (each string is its own copy, not a slice of the message). */
export function* decodeRouteSpecs(wire: Uint8Array): Generator<RouteSpec> {
  const bytes = Buffer.isBuffer(wire) ? wire : Buffer.from(wire.buffer, wire.byteOffset, wire.byteLength);
  let start = 0;
  while (start < bytes.length) {
    let end = bytes.indexOf(LINE, start);
    if (end === -1) end = bytes.length;
    const fields: string[] = [];
    let at = start;
    for (let i = 0; i < 4; i++) {
      const stop = bytes.indexOf(FIELD, at);
      if (stop === -1 || stop > end) throw new Error(`malformed route line at byte ${start}`);
      fields.push(bytes.toString('utf8', at, stop));
      at = stop + 1;
    }
    const source = fields[3];
    if (source !== 'static' && source !== 'session') throw new Error(`malformed route line at byte ${start}: source ${JSON.stringify(source)}`);
    const members = at === end ? [] : bytes.toString('utf8', at, end).split(',');
    yield { fqdn: fields[0]!, cluster: fields[1]!, rewrite: fields[2] === '' ? null : fields[2]!, source, members };
    start = end + 1;
  }
}

function checkField(value: string, fqdn: string): void {
  if (value.includes('\t') || value.includes('\n')) throw new Error(`route ${JSON.stringify(fqdn)}: field ${JSON.stringify(value)} cannot be encoded`);
}
