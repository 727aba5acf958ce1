#!/usr/bin/env node
// A Fulcio and a Rekor (v1) on 127.0.0.1 for the real `sigstore` CLI, from @sigstore/mock's
// handlers (which only answer inside their own process): keyless signing with no network.
// Usage: node mock-sigstore.js <port|0> <outdir>
// Prints `PORT=<n>` first. Writes <outdir>/fulcio-root.pem (the self-signed CA that issues the
// leaf certificates itself: no intermediate) and <outdir>/trusted_root.json. Serves until
// killed. The Fulcio decodes the identity token without verifying it.
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const mock = require('@sigstore/mock');

const [port = '0', outDir = '.'] = process.argv.slice(2);
const newKey = () => crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const spki = (k) => k.publicKey.export({ format: 'der', type: 'spki' });
const sha256 = (b) => crypto.createHash('sha256').update(b).digest();
const pem = (der) => `-----BEGIN CERTIFICATE-----\n${der.toString('base64').match(/.{1,64}/g).join('\n')}\n-----END CERTIFICATE-----\n`;

async function main() {
  const server = http.createServer();
  await new Promise((ok) => server.listen(Number(port), '127.0.0.1', ok));
  const base = `http://127.0.0.1:${server.address().port}`;

  const caKey = newKey(), ctKey = newKey(), rekorKey = newKey();
  const ctlog = await mock.initializeCTLog(ctKey);
  const ca = await mock.initializeCA(caKey, ctlog);
  const tlog = await mock.initializeTLog(base, rekorKey);
  const routes = {
    '/api/v2/signingCert': mock.fulcioHandler(ca).fn, // decodes the JWT without verifying it; SAN URI = `sub`
    '/api/v1/log/entries': mock.rekorHandler(tlog).fn,
  };

  // Whole seconds, a minute in the past: validity start of all trust-root entries.
  const start = new Date(Math.floor(Date.now() / 1000) * 1000 - 60000).toISOString().replace('.000Z', 'Z');
  const key = (k) => ({ rawBytes: spki(k).toString('base64'), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start } });
  const trustedRoot = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [{ baseUrl: base, hashAlgorithm: 'SHA2_256', publicKey: key(rekorKey), logId: { keyId: sha256(spki(rekorKey)).toString('base64') } }],
    certificateAuthorities: [{
      subject: { organization: 'sigstore.mock', commonName: 'sigstore' }, uri: base,
      certChain: { certificates: [{ rawBytes: ca.rootCertificate.toString('base64') }] }, validFor: { start },
    }],
    ctlogs: [{ baseUrl: base, hashAlgorithm: 'SHA2_256', publicKey: key(ctKey), logId: { keyId: ctlog.logID.toString('base64') } }],
    timestampAuthorities: [],
  };
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, 'fulcio-root.pem'), pem(ca.rootCertificate));
  fs.writeFileSync(path.join(outDir, 'trusted_root.json'), JSON.stringify(trustedRoot, null, 2) + '\n');

  server.on('request', (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const fn = req.method === 'POST' && routes[req.url.split('?')[0]];
      const r = fn ? await fn(Buffer.concat(chunks).toString())
        : { statusCode: 404, response: 'not found' };
      process.stderr.write(`${req.method} ${req.url} -> ${r.statusCode}\n`);
      res.writeHead(r.statusCode, { 'Content-Type': r.contentType || 'text/plain' });
      res.end(r.response);
    });
  });
  process.stdout.write(`PORT=${server.address().port}\n`);
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
}
main().catch((e) => { console.error(e); process.exit(1); });
