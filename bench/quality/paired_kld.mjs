// Paired KLD of two quantized models against one reference, from the LGT2
// logit files that `gguf-oracle eval --out` writes (same text, ctx, chunks).
// The oracle reports each model's mean KLD with a per-position standard error;
// two models scored on the same positions share most of their noise (hard
// positions are hard for both), so their difference is judged on the
// per-position differences instead. Positions inside one chunk are correlated
// too, so the reported standard error is the larger of the per-position one and
// the one from the 255-position chunk means.
// Usage: node paired_kld.mjs REF.lgt A.lgt B.lgt   ->  JSON on stdout
import { closeSync, openSync, readSync } from "node:fs";

function open(path) {
  const fd = openSync(path, "r");
  const head = Buffer.alloc(28);
  readSync(fd, head, 0, 28, 0);
  if (head.toString("latin1", 0, 4) !== "LGT2") throw new Error(`${path}: not an LGT2 file`);
  const [nCtx, nChunk, nVocab, first, nScored] = [4, 8, 12, 16, 20].map((o) => head.readUInt32LE(o));
  const tokensAt = 28;
  const logitsAt = tokensAt + 4 * nCtx * nChunk;
  return { path, fd, nCtx, nChunk, nVocab, first, nScored, tokensAt, logitsAt };
}

function sameLayout(a, b) {
  for (const k of ["nCtx", "nChunk", "nVocab", "first", "nScored"]) {
    if (a[k] !== b[k]) throw new Error(`${b.path}: ${k} ${b[k]} differs from ${a.path}'s ${a[k]}`);
  }
  const ta = Buffer.alloc(a.logitsAt - a.tokensAt), tb = Buffer.alloc(ta.length);
  readSync(a.fd, ta, 0, ta.length, a.tokensAt);
  readSync(b.fd, tb, 0, tb.length, b.tokensAt);
  if (!ta.equals(tb)) throw new Error(`${b.path}: tokens differ from ${a.path}'s`);
}

function readChunk(f, c) {
  const n = f.nScored * f.nVocab;
  const buf = Buffer.alloc(4 * n);
  readSync(f.fd, buf, 0, buf.length, f.logitsAt + 4 * n * c);
  return new Float32Array(buf.buffer, buf.byteOffset, n);
}

// Natural-log softmax of row r into out (doubles).
function logSoftmax(logits, r, nVocab, out) {
  const base = r * nVocab;
  let max = -Infinity;
  for (let v = 0; v < nVocab; ++v) max = Math.max(max, logits[base + v]);
  let sum = 0;
  for (let v = 0; v < nVocab; ++v) sum += Math.exp(logits[base + v] - max);
  const lse = max + Math.log(sum);
  for (let v = 0; v < nVocab; ++v) out[v] = logits[base + v] - lse;
}

function kl(lp, pr, lq, nVocab) {
  let s = 0;
  for (let v = 0; v < nVocab; ++v) s += pr[v] * (lp[v] - lq[v]);
  return s;
}

class Moments {
  n = 0;
  sum = 0;
  sum2 = 0;
  add(x) {
    this.n += 1;
    this.sum += x;
    this.sum2 += x * x;
  }
  mean() {
    return this.sum / this.n;
  }
  stderr() {
    if (this.n < 2) return NaN;
    const m = this.mean();
    return Math.sqrt(Math.max(0, this.sum2 / this.n - m * m) / (this.n - 1));
  }
}

const [refPath, aPath, bPath] = process.argv.slice(2);
if (!bPath) {
  console.error("usage: node paired_kld.mjs REF.lgt A.lgt B.lgt");
  process.exit(2);
}
const ref = open(refPath), a = open(aPath), b = open(bPath);
sameLayout(ref, a);
sameLayout(ref, b);
const nv = ref.nVocab;
const lp = new Float64Array(nv), pr = new Float64Array(nv), la = new Float64Array(nv), lb = new Float64Array(nv);
const klA = new Moments(), klB = new Moments(), diff = new Moments(), chunkDiff = new Moments();
for (let c = 0; c < ref.nChunk; ++c) {
  const [lr, lga, lgb] = [ref, a, b].map((f) => readChunk(f, c));
  let chunkSum = 0;
  for (let r = 0; r < ref.nScored; ++r) {
    logSoftmax(lr, r, nv, lp);
    for (let v = 0; v < nv; ++v) pr[v] = Math.exp(lp[v]);
    logSoftmax(lga, r, nv, la);
    logSoftmax(lgb, r, nv, lb);
    const ka = kl(lp, pr, la, nv), kb = kl(lp, pr, lb, nv);
    klA.add(ka);
    klB.add(kb);
    diff.add(kb - ka);
    chunkSum += kb - ka;
  }
  chunkDiff.add(chunkSum / ref.nScored);
}
for (const f of [ref, a, b]) closeSync(f.fd);
console.log(
  JSON.stringify({
    n_positions: diff.n,
    n_chunks: chunkDiff.n,
    kld_a: klA.mean(),
    kld_a_stderr: klA.stderr(),
    kld_b: klB.mean(),
    kld_b_stderr: klB.stderr(),
    diff_mean: diff.mean(),
    diff_stderr_positions: diff.stderr(),
    diff_stderr_chunks: chunkDiff.stderr(),
    diff_stderr: Math.max(diff.stderr(), chunkDiff.stderr()),
  }),
);
