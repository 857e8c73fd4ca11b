// Seeded fault injection shared by the test receivers (fhir_receiver.mjs, webhook_receiver.mjs):
// the kinds, a deterministic PRNG (a seed replays the same faults for the same requests), the
// counts, and the /_faults control endpoints.

// mulberry32: a small deterministic PRNG.
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export class Faults {
  // `known`: the kinds this receiver can inject; `kinds`: a comma-separated choice of them.
  constructor({ known, enabled, rate, kinds, seed }) {
    this.known = known;
    this.enabled = enabled;
    this.rate = rate;
    this.kinds = kinds ? kinds.split(',') : known;
    for (const kind of this.kinds) {
      if (!known.includes(kind)) throw new Error(`unknown fault kind ${kind}; known: ${known.join(',')}`);
    }
    this.requests = 0;
    this.faults = 0;
    this.counts = Object.fromEntries(known.map((k) => [k, 0]));
    this.random = mulberry32(seed);
  }

  // The fault for the next request, if any (counted); undefined when it goes through.
  pick() {
    if (!this.enabled) return undefined;
    this.requests++;
    if (!(this.random() < this.rate && this.kinds.length)) return undefined;
    const kind = this.kinds[Math.floor(this.random() * this.kinds.length)];
    this.counts[kind]++;
    this.faults++;
    return kind;
  }

  // Answers the control paths: POST /_faults/on[?rate=R&kinds=K,K], POST /_faults/off and
  // GET /_faults. Returns [status, body], or undefined when `url` is not one of them.
  control(method, url) {
    if (url.pathname !== '/_faults' && !url.pathname.startsWith('/_faults/')) return undefined;
    if (method === 'POST' && (url.pathname === '/_faults/on' || url.pathname === '/_faults/off')) {
      this.enabled = url.pathname === '/_faults/on';
      if (url.searchParams.has('rate')) this.rate = Number(url.searchParams.get('rate'));
      if (url.searchParams.has('kinds')) {
        this.kinds = url.searchParams.get('kinds').split(',').filter((k) => this.known.includes(k));
      }
    } else if (!(method === 'GET' && url.pathname === '/_faults')) {
      return [404, { error: 'NotFound', message: `${method} ${url.pathname}` }];
    }
    const { enabled, rate, kinds, requests, faults, counts } = this;
    return [200, { enabled, rate, kinds, requests, faults, counts }];
  }
}
