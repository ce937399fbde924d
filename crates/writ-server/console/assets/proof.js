// The Governance Proof Viewer's verification, in the page's own code: pure functions over
// bytes and text, with SHA-256 and Ed25519 from the Web Crypto API (the browser's, or
// Node's `globalThis.crypto` in the tests). Nothing here trusts the server: every hash,
// signature and proof the server hands over is checked again.
//
// Standards:
// - RFC 6962 / RFC 9162 §2.1: leaf hash SHA-256(0x00 ‖ entry), node hash SHA-256(0x01 ‖ l ‖ r),
//   inclusion verification (§2.1.3.2) and consistency verification (§2.1.4.2).
// - C2SP signed-note (https://c2sp.org/signed-note): vkeys, key ids, Ed25519 signature lines.
// - C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint): origin, tree size, root hash.
// - C2SP tlog-proof (https://c2sp.org/tlog-proof): the receipt `GET /v1/log/receipt/{index}`
//   answers (crates/writ-log/src/receipt.rs).
// - RFC 7515 / RFC 8037: a writ is a compact JWS signed with EdDSA (Ed25519).
// - RFC 8785: the writ's `req` claim is "sha256:" + hex SHA-256 of the canonical JSON of
//   {action, resource, arguments} (docs/writ-format.md); canonical JSON by the vendored
//   `canonicalize` package.
import canonicalize from "../vendor/canonicalize/canonicalize.js";

const enc = new TextEncoder();
const subtle = () => globalThis.crypto.subtle;

/** A failed check: `step` names the check that failed. */
export class StepError extends Error {
  constructor(step, message) {
    super(message);
    this.step = step;
  }
}

// --- bytes ---------------------------------------------------------------------------

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(hex) {
  if (!/^(?:[0-9a-f]{2})*$/.test(hex)) throw new Error("not lowercase hex");
  return Uint8Array.from(hex.match(/../g) || [], (h) => parseInt(h, 16));
}

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Standard base64, strictly (padding required, no whitespace, canonical final bits). */
export function fromBase64(s) {
  if (typeof s !== "string" || !B64.test(s)) throw new Error("not standard base64");
  const bytes = Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  if (toBase64(bytes) !== s) throw new Error("not canonical base64");
  return bytes;
}

export function toBase64(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/** base64url without padding (RFC 7515 §2), strictly. */
export function fromBase64Url(s) {
  if (typeof s !== "string" || !/^[A-Za-z0-9_-]*$/.test(s) || s.length % 4 === 1) {
    throw new Error("not base64url");
  }
  const std = s.replace(/-/g, "+").replace(/_/g, "/");
  const padded = std + "=".repeat((4 - (std.length % 4)) % 4);
  const bytes = fromBase64(padded);
  return bytes;
}

export async function sha256(bytes) {
  return new Uint8Array(await subtle().digest("SHA-256", bytes));
}

// --- RFC 6962 / 9162 ------------------------------------------------------------------

export const leafHash = (entry) => sha256(concat(Uint8Array.of(0), entry));
export const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));

const big = (n, what) => {
  if (typeof n === "bigint") return n;
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${what} is not a non-negative integer`);
  return BigInt(n);
};

/** The root an inclusion proof leads to from `leaf` (RFC 9162 §2.1.3.2), or an error. */
export async function rootFromInclusion(index, size, leaf, proof) {
  if (!(leaf instanceof Uint8Array) || leaf.length !== 32) throw new Error("the leaf hash is not 32 bytes");
  let fn = big(index, "index");
  let sn = big(size, "tree size") - 1n;
  if (fn > sn) throw new Error(`index ${index} is not below tree size ${size}`);
  let r = leaf;
  for (const p of proof) {
    if (p.length !== 32) throw new Error("a proof hash is not 32 bytes");
    if (sn === 0n) throw new Error("the inclusion proof is too long");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new Error("the inclusion proof is too short");
  return r;
}

/** Throws unless `proof` leads from `leaf` at `index` to `root` of a tree of `size`. */
export async function verifyInclusion(index, size, leaf, proof, root) {
  if (!(root instanceof Uint8Array) || root.length !== 32) throw new Error("the root hash is not 32 bytes");
  const r = await rootFromInclusion(index, size, leaf, proof);
  if (!equalBytes(r, root)) throw new Error("the inclusion proof does not lead to the root");
}

/** Throws unless `proof` shows the tree of `size1` (root1) is a prefix of the tree of
 *  `size2` (root2), RFC 9162 §2.1.4.2. */
export async function verifyConsistency(size1, size2, root1, root2, proof) {
  const old = big(size1, "old size");
  const neu = big(size2, "new size");
  if (old > neu) throw new Error("the old tree size is larger than the new one");
  if (old === 0n) throw new Error("a consistency proof from the empty tree proves nothing");
  if (old === neu) {
    if (proof.length !== 0) throw new Error("equal tree sizes need an empty consistency proof");
    if (!equalBytes(root1, root2)) throw new Error("equal tree sizes with different roots");
    return;
  }
  if (root1.length !== 32 || root2.length !== 32) throw new Error("a root hash is not 32 bytes");
  if (proof.length === 0) throw new Error("empty consistency proof");
  for (const p of proof) if (p.length !== 32) throw new Error("a proof hash is not 32 bytes");
  const pow2 = (old & (old - 1n)) === 0n;
  const seed = pow2 ? root1 : proof[0];
  const tail = pow2 ? proof : proof.slice(1);
  let fn = old - 1n;
  let sn = neu - 1n;
  while ((fn & 1n) === 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = seed;
  let sr = seed;
  for (const c of tail) {
    if (sn === 0n) throw new Error("the consistency proof is too long");
    if ((fn & 1n) === 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new Error("the consistency proof is too short");
  if (!equalBytes(fr, root1)) throw new Error("the consistency proof does not lead to the old root");
  if (!equalBytes(sr, root2)) throw new Error("the consistency proof does not lead to the new root");
}

// --- C2SP signed-note, tlog-checkpoint, tlog-proof --------------------------------------

const SIG_PREFIX = "\u2014 ";

/** Parses a vkey `<name>+<hex key id>+<base64(0x01 ‖ key)>` and checks its key id. */
export async function parseVkey(vkey) {
  const v = String(vkey).trim();
  const p1 = v.indexOf("+");
  const p2 = v.indexOf("+", p1 + 1);
  if (p1 <= 0 || p2 < 0) throw new Error("a vkey is name+keyid+key");
  const name = v.slice(0, p1);
  const hash = v.slice(p1 + 1, p2);
  if (/\s/.test(name)) throw new Error("a key name holds no whitespace");
  if (!/^[0-9a-f]{8}$/.test(hash)) throw new Error("the vkey's key id is not 8 hex digits");
  const raw = fromBase64(v.slice(p2 + 1));
  if (raw.length !== 33 || raw[0] !== 1) throw new Error("not an Ed25519 vkey");
  const keyId = (await sha256(concat(enc.encode(name + "\n"), raw))).slice(0, 4);
  if (toHex(keyId) !== hash) throw new Error("the vkey's key id does not match its key");
  return { name, keyId, key: raw.slice(1), text: v };
}

/** Splits a signed note into its text (with final newline) and signature lines. */
export function parseNote(note) {
  if (typeof note !== "string" || note.length > 64 * 1024) throw new Error("not a note (or larger than 64 KiB)");
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw new Error("a signed note has a blank line before its signatures");
  const text = note.slice(0, split + 1);
  if (/[\x00-\x09\x0b-\x1f\x7f]/.test(text)) throw new Error("control characters in the note text");
  const rest = note.slice(split + 2);
  if (!rest.endsWith("\n")) throw new Error("the signature lines end with a newline");
  const signatures = [];
  for (const line of rest.slice(0, -1).split("\n")) {
    if (!line.startsWith(SIG_PREFIX)) throw new Error(`not a signature line: ${JSON.stringify(line.slice(0, 40))}`);
    const [name, sig, extra] = line.slice(SIG_PREFIX.length).split(" ");
    if (!name || !sig || extra !== undefined) throw new Error("a signature line is \u2014 name base64");
    const bytes = fromBase64(sig);
    if (bytes.length < 5) throw new Error("a signature is a key id and a signature");
    signatures.push({ name, keyId: bytes.slice(0, 4), signature: bytes.slice(4) });
  }
  if (signatures.length === 0) throw new Error("the note has no signature");
  return { text, signatures };
}

async function importEd25519(raw) {
  try {
    return await subtle().importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
  } catch (e) {
    throw new Error(`this browser's Web Crypto has no Ed25519 (${e.message})`);
  }
}

/** Ed25519 verification through the Web Crypto API. */
export async function ed25519Verify(publicKey, signature, message) {
  if (signature.length !== 64) return false;
  const key = await importEd25519(publicKey);
  return subtle().verify({ name: "Ed25519" }, key, signature, message);
}

/** Throws unless `note` carries a valid signature by the key of `vkey`. */
export async function verifyNote(note, vkey) {
  const k = typeof vkey === "string" ? await parseVkey(vkey) : vkey;
  const { text, signatures } = parseNote(note);
  const mine = signatures.filter((s) => s.name === k.name && equalBytes(s.keyId, k.keyId));
  if (mine.length === 0) throw new Error(`no signature by the log key ${k.name}`);
  for (const s of mine) {
    if (!(await ed25519Verify(k.key, s.signature, enc.encode(text)))) {
      throw new Error(`the signature by ${k.name} does not verify`);
    }
  }
  return text;
}

/** Parses a checkpoint body (the note's text): origin, size, root, extension lines. */
export function parseCheckpoint(text) {
  if (!text.endsWith("\n")) throw new Error("a checkpoint ends with a newline");
  const [origin, sizeLine, rootLine, ...extensions] = text.slice(0, -1).split("\n");
  if (!origin) throw new Error("no origin line");
  if (!/^(0|[1-9][0-9]*)$/.test(sizeLine || "")) throw new Error("the tree size is not a canonical decimal");
  const size = BigInt(sizeLine);
  if (size >= 1n << 64n) throw new Error("the tree size does not fit in 64 bits");
  if (rootLine === undefined) throw new Error("no root hash line");
  const root = fromBase64(rootLine);
  if (root.length !== 32) throw new Error("the root hash is not 32 bytes");
  if (extensions.some((e) => e === "")) throw new Error("empty extension line");
  return { origin, size, root, extensions };
}

/** Parses a C2SP tlog-proof receipt (strictly, as crates/writ-log/src/receipt.rs does). */
export function parseReceipt(text) {
  const t = String(text).replace(/\r\n/g, "\n");
  const split = t.indexOf("\n\n");
  if (split < 0) throw new Error("no empty line before the checkpoint");
  const lines = t.slice(0, split).split("\n");
  const checkpoint = t.slice(split + 2);
  if (lines.shift() !== "c2sp.org/tlog-proof@v1") throw new Error("the first line must be c2sp.org/tlog-proof@v1");
  let extra = null;
  if (lines[0] !== undefined && lines[0].startsWith("extra ")) extra = fromBase64(lines.shift().slice(6));
  const idx = lines.shift();
  const m = /^index (0|[1-9][0-9]*)$/.exec(idx || "");
  if (!m) throw new Error("expected an index line");
  const index = BigInt(m[1]);
  if (lines.length > 64) throw new Error("more than 64 proof hashes");
  const proof = lines.map((l) => {
    const h = fromBase64(l);
    if (h.length !== 32) throw new Error("a proof hash is not 32 bytes");
    return h;
  });
  return { extra, index, proof, checkpoint };
}

// --- writs (compact JWS, EdDSA) and the request binding --------------------------------

const dec = new TextDecoder("utf-8", { fatal: true });

/** Splits a compact JWS into header, claims and the bytes it signs. */
export function parseJws(compact) {
  const parts = String(compact).trim().split(".");
  if (parts.length !== 3) throw new Error("a writ is a compact JWS: three base64url parts");
  let header;
  let claims;
  try {
    header = JSON.parse(dec.decode(fromBase64Url(parts[0])));
    claims = JSON.parse(dec.decode(fromBase64Url(parts[1])));
  } catch (e) {
    throw new Error(`the writ's header or claims are not JSON: ${e.message}`);
  }
  if (!header || typeof header !== "object" || !claims || typeof claims !== "object") {
    throw new Error("the writ's header and claims are JSON objects");
  }
  return {
    header,
    claims,
    signingInput: enc.encode(`${parts[0]}.${parts[1]}`),
    signature: fromBase64Url(parts[2]),
  };
}

/** Throws unless the writ's signature verifies with the JWKS key its header names. */
export async function verifyJws(compact, jwks) {
  const jws = typeof compact === "string" ? parseJws(compact) : compact;
  if (jws.header.alg !== "EdDSA") throw new Error(`alg ${JSON.stringify(jws.header.alg)} is not EdDSA`);
  const keys = (jwks && Array.isArray(jwks.keys) ? jwks.keys : []).filter((k) => k.kid === jws.header.kid);
  if (keys.length !== 1) throw new Error(`the JWKS has no key ${JSON.stringify(jws.header.kid)}`);
  const k = keys[0];
  if (k.kty !== "OKP" || k.crv !== "Ed25519") throw new Error("the JWKS key is not an Ed25519 OKP key");
  const x = fromBase64Url(k.x);
  if (x.length !== 32) throw new Error("the JWKS key is not 32 bytes");
  if (!(await ed25519Verify(x, jws.signature, jws.signingInput))) {
    throw new Error(`the writ's signature does not verify with key ${k.kid}`);
  }
  return jws;
}

/** RFC 8785 canonical JSON (the vendored `canonicalize` package). */
export function canonicalJson(value) {
  return canonicalize(value);
}

/** `req`: "sha256:" + hex SHA-256 of the canonical JSON of {action, resource, arguments}. */
export async function requestDigest(action, resource, args) {
  if (typeof action !== "string" || typeof resource !== "string") throw new Error("action and resource are strings");
  if (!args || typeof args !== "object" || Array.isArray(args)) throw new Error("arguments is a JSON object");
  return "sha256:" + toHex(await sha256(enc.encode(canonicalJson({ action, resource, arguments: args }))));
}

// --- what the user pasted -----------------------------------------------------------

/** Classifies an input: `{kind: "receipt"|"writ"|"index"|"id", ...}`. */
export function classify(input) {
  const s = String(input || "").trim();
  if (s.startsWith("c2sp.org/tlog-proof@v1")) return { kind: "receipt", receipt: String(input).trim() + "\n" };
  if (/^(0|[1-9][0-9]*)$/.test(s)) return { kind: "index", index: BigInt(s) };
  if (/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(s)) return { kind: "writ", writ: s };
  if (/^[A-Za-z0-9._:-]{1,256}$/.test(s)) return { kind: "id", id: s };
  throw new Error("paste a writ (compact JWS), a writ or decision id, a tlog-proof receipt or a log index");
}

// --- trust on first use: the log key and the checkpoints seen --------------------------

/** Pins the log key in `storage` (a localStorage-like object) the first time an origin is
 *  seen: `{state: "pinned"|"match"|"mismatch", pinned}`. */
export function pinKey(storage, origin, vkey) {
  const k = `writ.console.vkey.${origin}`;
  const pinned = storage.getItem(k);
  if (pinned === null) {
    storage.setItem(k, vkey.trim());
    return { state: "pinned", pinned: vkey.trim() };
  }
  return { state: pinned === vkey.trim() ? "match" : "mismatch", pinned };
}

const MAX_SEEN = 32;

/** The checkpoints of `origin` seen before: `[{size (string), root (base64)}]`. */
export function seenCheckpoints(storage, origin) {
  try {
    const v = JSON.parse(storage.getItem(`writ.console.checkpoints.${origin}`) || "[]");
    return Array.isArray(v) ? v.filter((c) => typeof c.size === "string" && typeof c.root === "string") : [];
  } catch {
    return [];
  }
}

/** Remembers a verified checkpoint (bounded: the newest MAX_SEEN sizes). */
export function rememberCheckpoint(storage, origin, size, root) {
  const list = seenCheckpoints(storage, origin).filter((c) => c.size !== String(size));
  list.push({ size: String(size), root: toBase64(root) });
  list.sort((a, b) => (BigInt(a.size) < BigInt(b.size) ? -1 : 1));
  storage.setItem(`writ.console.checkpoints.${origin}`, JSON.stringify(list.slice(-MAX_SEEN)));
}

// --- the whole verification, step by step -------------------------------------------

/**
 * Runs every check the evidence allows and returns the steps, each
 * `{step, title, ok: true|false|null, detail}` (null: not applicable), stopping the chain
 * of trust at the first failure (later steps are `null` with "not reached").
 *
 * evidence: { receipt (text), entry (Uint8Array, the entry's exact bytes), serverLeafHash
 * (base64, optional), vkey (text, the key the server publishes), storage (localStorage-like),
 * consistency(from, to) → Promise<[Uint8Array]>, writ (compact JWS, optional), jwks,
 * expectId (the id asked for, optional) }
 */
export async function verifyEvidence(ev) {
  const steps = [];
  let failed = false;
  const run = async (step, title, fn) => {
    if (failed) {
      steps.push({ step, title, ok: null, detail: "not reached: an earlier step failed" });
      return undefined;
    }
    try {
      const out = await fn();
      if (out && out.skip) {
        steps.push({ step, title, ok: null, detail: out.skip });
        return undefined;
      }
      steps.push({ step, title, ok: true, detail: out && out.detail ? out.detail : String(out ?? "") });
      return out;
    } catch (e) {
      failed = true;
      steps.push({ step, title, ok: false, detail: e.message });
      return undefined;
    }
  };

  let receipt;
  let cp;
  let leaf;
  let entry;
  let key;
  await run("receipt", "The receipt parses (C2SP tlog-proof)", async () => {
    receipt = parseReceipt(ev.receipt);
    return { detail: `entry ${receipt.index}, ${receipt.proof.length} proof hashes` };
  });
  await run("log-key", "The log key is the one pinned in this browser", async () => {
    key = await parseVkey(ev.vkey);
    const pin = pinKey(ev.storage, key.name, key.text);
    if (pin.state === "mismatch") throw new Error(`the server's log key ${key.text} is not the pinned ${pin.pinned}`);
    return { detail: pin.state === "pinned" ? `first use: pinned ${key.text}` : `matches the pinned ${key.text}` };
  });
  await run("checkpoint", "The checkpoint is signed by the log key (Ed25519)", async () => {
    const text = await verifyNote(receipt.checkpoint, key);
    cp = parseCheckpoint(text);
    if (cp.origin !== key.name) throw new Error(`the checkpoint's origin ${cp.origin} is not the key's name ${key.name}`);
    return { detail: `${cp.origin}, tree size ${cp.size}, root ${toBase64(cp.root)}` };
  });
  await run("entry", "The entry hashes to its leaf (RFC 6962 leaf hash)", async () => {
    if (!ev.entry) throw new Error("no entry to check");
    leaf = await leafHash(ev.entry);
    if (ev.serverLeafHash && ev.serverLeafHash !== toBase64(leaf)) {
      throw new Error(`the entry's bytes hash to ${toBase64(leaf)}, not the leaf hash ${ev.serverLeafHash} the server gave`);
    }
    try {
      entry = JSON.parse(dec.decode(ev.entry));
    } catch (e) {
      throw new Error(`the entry is not UTF-8 JSON: ${e.message}`);
    }
    if (ev.expectId && entry.id !== ev.expectId) throw new Error(`the entry is ${entry.id}, not ${ev.expectId}`);
    return { detail: `${entry.kind || "entry"} ${entry.id || ""} → leaf ${toBase64(leaf)}` };
  });
  await run("inclusion", "The inclusion proof leads from the leaf to the signed root (RFC 9162 §2.1.3)", async () => {
    await verifyInclusion(receipt.index, cp.size, leaf, receipt.proof, cp.root);
    return { detail: `${receipt.proof.length} hashes from entry ${receipt.index} to the root of tree size ${cp.size}` };
  });
  await run("consistency", "Every checkpoint seen before is a prefix of this one (RFC 9162 §2.1.4)", async () => {
    const seen = seenCheckpoints(ev.storage, cp.origin);
    const checked = [];
    for (const s of seen) {
      const size = BigInt(s.size);
      const root = fromBase64(s.root);
      if (size === 0n) continue;
      if (size === cp.size) {
        if (!equalBytes(root, cp.root)) throw new Error(`tree size ${size} was seen with root ${s.root}, now ${toBase64(cp.root)}: the log forked`);
        checked.push(String(size));
        continue;
      }
      const [a, ra, b, rb] = size < cp.size ? [size, root, cp.size, cp.root] : [cp.size, cp.root, size, root];
      const proof = await ev.consistency(a, b);
      try {
        await verifyConsistency(a, b, ra, rb, proof);
      } catch (e) {
        throw new Error(`between tree sizes ${a} and ${b}: ${e.message}`);
      }
      checked.push(String(size));
    }
    rememberCheckpoint(ev.storage, cp.origin, cp.size, cp.root);
    return {
      detail: checked.length ? `consistent with ${checked.length} checkpoint(s) seen before (sizes ${checked.join(", ")})` : "the first checkpoint this browser has seen of this log: remembered",
    };
  });
  if (!ev.writ) {
    steps.push({ step: "writ-signature", title: "The writ's signature verifies (JWKS, EdDSA)", ok: null, detail: "no writ given: paste one to check it" });
    steps.push({ step: "writ-entry", title: "The writ is the one the entry records", ok: null, detail: "no writ given" });
    steps.push({ step: "binding", title: "The writ's req binds the recorded request (RFC 8785)", ok: null, detail: "no writ given" });
    return finish(steps, entry, receipt);
  }
  let jws;
  await run("writ-signature", "The writ's signature verifies (JWKS, EdDSA)", async () => {
    jws = await verifyJws(ev.writ, ev.jwks);
    return { detail: `signed by key ${jws.header.kid}` };
  });
  await run("writ-entry", "The writ is the one the entry records", async () => {
    const c = jws.claims;
    if (!entry || entry.kind !== "decision") throw new Error("the entry is not a decision");
    if (c.jti !== entry.id) throw new Error(`the writ is ${c.jti}, the entry records ${entry.id}`);
    if (!entry.writ) throw new Error("the entry issued no writ");
    for (const [k, v] of Object.entries(entry.writ)) {
      if (canonicalJson(c[k] ?? null) !== canonicalJson(v)) throw new Error(`the writ's ${k} is ${JSON.stringify(c[k])}, the entry records ${JSON.stringify(v)}`);
    }
    if (c.log !== undefined) {
      if (!c.log || String(c.log.index) !== String(receipt.index)) throw new Error(`the writ names log index ${c.log && c.log.index}, the receipt is for ${receipt.index}`);
      if (c.log.leaf !== "sha256:" + toHex(leaf)) throw new Error(`the writ names leaf ${c.log.leaf}, the entry hashes to sha256:${toHex(leaf)}`);
    }
    return { detail: `${c.jti} for ${c.sub}, log index ${receipt.index}` };
  });
  await run("binding", "The writ's req binds the recorded request (RFC 8785)", async () => {
    const r = entry.request || {};
    const digest = await requestDigest(r.action, r.resource, r.arguments);
    if (r.digest !== undefined && r.digest !== digest) throw new Error(`the entry's request hashes to ${digest}, the entry says ${r.digest}`);
    if (jws.claims.req !== digest) throw new Error(`the writ's req is ${jws.claims.req}, the recorded request hashes to ${digest}`);
    return { detail: `${r.action} on ${r.resource}: ${digest}` };
  });
  return finish(steps, entry, receipt);
}

function finish(steps, entry, receipt) {
  const failedStep = steps.find((s) => s.ok === false);
  return { ok: !failedStep, failed: failedStep ? failedStep.step : null, steps, entry, index: receipt ? receipt.index : null };
}
