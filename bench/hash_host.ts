// Chunk-id hash benchmark on the host: SHA-256 through WebCrypto
// (crypto.subtle.digest, native code in Deno) against BLAKE3 from
// @noble/hashes (pure TypeScript/JS). @noble/hashes' own pure-JS SHA-256 is
// timed too, to separate "native vs JS" from "SHA-256 vs BLAKE3".
// See bench/hash_choice.md.
//
//   deno run -A bench/hash_host.ts              verify, then time 4 MiB and 64 KiB
//   deno run -A bench/hash_host.ts hex ALG N    digest of N bytes of i % 251
//                                               (ALG: sha256 | blake3), for
//                                               cross-checking bench/hash_c.c
import { blake3 } from "@noble/hashes/blake3.js";
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";

const hex = (b: Uint8Array): string =>
  Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

async function webcryptoSha256(data: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

function pattern(n: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
}

type Hash = (data: Uint8Array<ArrayBuffer>) => Uint8Array | Promise<Uint8Array>;

const ALGS: Record<string, Hash> = {
  "sha256 (WebCrypto)": webcryptoSha256,
  "sha256 (noble, JS)": (d) => nobleSha256(d),
  "blake3 (noble, JS)": (d) => blake3(d),
};

async function verify(): Promise<void> {
  const enc = new TextEncoder();
  const kats: [string, string, string][] = [
    ["sha256", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"],
    ["sha256", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"],
    ["blake3", "", "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"],
    ["blake3", "abc", "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"],
  ];
  for (const [alg, msg, want] of kats) {
    for (const [name, f] of Object.entries(ALGS)) {
      if (!name.startsWith(alg)) continue;
      const got = hex(await f(enc.encode(msg) as Uint8Array<ArrayBuffer>));
      if (got !== want) throw new Error(`${name}("${msg}") = ${got}, expected ${want}`);
    }
  }
  console.log("known-answer tests ok");
}

// Best of 5 runs, each hashing the buffer repeatedly for >= 0.3 s, after a
// 0.3 s warm-up (JIT). MB = 1e6 bytes.
async function mbps(f: Hash, buf: Uint8Array<ArrayBuffer>): Promise<number> {
  const run = async (): Promise<number> => {
    let reps = 0;
    const t0 = performance.now();
    let t: number;
    do {
      await f(buf);
      reps++;
      t = (performance.now() - t0) / 1000;
    } while (t < 0.3);
    return (buf.length * reps) / t / 1e6;
  };
  await run();
  let best = 0;
  for (let i = 0; i < 5; i++) best = Math.max(best, await run());
  return best;
}

if (Deno.args[0] === "hex" && Deno.args.length === 3) {
  const f = Deno.args[1] === "sha256"
    ? ALGS["sha256 (WebCrypto)"]
    : Deno.args[1] === "blake3"
    ? ALGS["blake3 (noble, JS)"]
    : undefined;
  if (!f) throw new Error("ALG must be sha256 or blake3");
  console.log(hex(await f(pattern(Number(Deno.args[2])))));
} else {
  await verify();
  console.log(`deno ${Deno.version.deno}, v8 ${Deno.version.v8}, ${Deno.build.target}`);
  for (const n of [4 << 20, 64 << 10]) {
    const buf = pattern(n);
    const r: Record<string, number> = {};
    for (const [name, f] of Object.entries(ALGS)) r[name] = await mbps(f, buf);
    const label = `${n >> 10} KiB`.padStart(8);
    for (const [name, v] of Object.entries(r)) {
      console.log(`${label}  ${name.padEnd(20)} ${v.toFixed(1).padStart(8)} MB/s`);
    }
    const w = r["sha256 (WebCrypto)"], b = r["blake3 (noble, JS)"], j = r["sha256 (noble, JS)"];
    console.log(
      `${label}  ratio WebCrypto sha256 / noble blake3 = ${(w / b).toFixed(2)}x;` +
        ` noble blake3 / noble sha256 = ${(b / j).toFixed(2)}x`,
    );
  }
}
