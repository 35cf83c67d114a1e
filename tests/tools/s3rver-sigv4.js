#!/usr/bin/env node
// A local S3-compatible server for Portico's tests: s3rver (node_modules, installed by scripts/install-deps.sh)
// with AWS Signature Version 4 checked for real. s3rver 3.x accepts any V4 signature from a known access key
// ("Signature version 4 calculation is unimplemented"), so a client signing with a wrong secret would pass.
// This wrapper recomputes the header-based SigV4 signature of every request (and the SHA-256 of a PUT body
// against x-amz-content-sha256) and answers 403 SignatureDoesNotMatch / XAmzContentSHA256Mismatch.
//
//   node tests/tools/s3rver-sigv4.js --port P --directory DIR --bucket NAME [--credentials-file FILE]
//
// FILE: line 1 the access key, line 2 the secret key (default S3RVER / S3RVER). Prints "listening on
// 127.0.0.1:P" once it accepts requests. Requests without an Authorization header are refused (403).
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { Readable } = require('stream');

// s3rver encrypts its list continuation tokens with single DES, which OpenSSL 3 keeps in its legacy provider
// (Node answers "unsupported" and the listing fails with a 500). DES-EDE3 with the key repeated three times
// is the same cipher, and the default provider has it.
for (const name of ['createCipheriv', 'createDecipheriv']) {
  const original = crypto[name];
  crypto[name] = (algorithm, key, iv, options) =>
    String(algorithm).toLowerCase() === 'des' || String(algorithm).toLowerCase() === 'des-cbc'
      ? original('des-ede3-cbc', Buffer.concat([key, key, key]), iv, options)
      : original(algorithm, key, iv, options);
}

const ROOT = path.resolve(__dirname, '..', '..');
const S3rver = require(path.join(ROOT, 'node_modules', 's3rver'));
const AWSAccount = require(path.join(ROOT, 'node_modules', 's3rver', 'lib', 'models', 'account'));

function arg(name, fallback) {
  const i = process.argv.indexOf('--' + name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const sha256 = data => crypto.createHash('sha256').update(data).digest('hex');
const hmac = (key, data) => crypto.createHmac('sha256', key).update(data).digest();

// RFC 3986 encoding as SigV4 wants it (S3: the path is encoded once, '/' kept).
function encode(text, keepSlash) {
  return encodeURIComponent(text)
    .replace(/[!'()*]/g, c => '%' + c.charCodeAt(0).toString(16).toUpperCase())
    .replace(keepSlash ? /%2F/g : /$^/, '/');
}

// The signature of a request as AWS computes it. `req`: {method, path (decoded), query [[k, v]] (decoded),
// headers {lower-case name: value}, signedHeaders [names], payloadHash, date, region, service, secret}.
function signature(req) {
  const canonicalQuery = req.query
    .map(([k, v]) => [encode(k), encode(v)])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => k + '=' + v)
    .join('&');
  const canonicalHeaders = req.signedHeaders
    .map(h => h + ':' + String(req.headers[h] || '').trim().replace(/\s+/g, ' ') + '\n')
    .join('');
  const canonical = [req.method, encode(req.path, true), canonicalQuery, canonicalHeaders,
    req.signedHeaders.join(';'), req.payloadHash].join('\n');
  const day = req.date.slice(0, 8);
  const scope = [day, req.region, req.service, 'aws4_request'].join('/');
  const toSign = ['AWS4-HMAC-SHA256', req.date, scope, sha256(canonical)].join('\n');
  let key = hmac('AWS4' + req.secret, day);
  for (const part of [req.region, req.service, 'aws4_request']) key = hmac(key, part);
  return crypto.createHmac('sha256', key).update(toSign).digest('hex');
}

// Self-check against AWS's published example (S3 API reference, "Example: GET Object").
const example = signature({
  method: 'GET', path: '/test.txt', query: [],
  headers: {
    host: 'examplebucket.s3.amazonaws.com', range: 'bytes=0-9',
    'x-amz-content-sha256': sha256(''), 'x-amz-date': '20130524T000000Z',
  },
  signedHeaders: ['host', 'range', 'x-amz-content-sha256', 'x-amz-date'],
  payloadHash: sha256(''), date: '20130524T000000Z', region: 'us-east-1', service: 's3',
  secret: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
});
if (example !== 'f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41') {
  console.error('s3rver-sigv4: the SigV4 self-check failed: ' + example);
  process.exit(1);
}

function deny(ctx, status, code, message) {
  ctx.status = status;
  ctx.type = 'application/xml';
  ctx.body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>' + code + '</Code><Message>' + message +
    '</Message></Error>';
}

async function verify(ctx, next) {
  const auth = ctx.get('authorization');
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return deny(ctx, 403, 'AccessDenied', 'a SigV4 Authorization header is required');
  const [, accessKey, day, region, service, signed, given] = m;
  const account = AWSAccount.registry.get(accessKey);
  if (!account) return deny(ctx, 403, 'InvalidAccessKeyId', 'unknown access key');
  const headers = {};
  for (const [k, v] of Object.entries(ctx.headers)) headers[k.toLowerCase()] = Array.isArray(v) ? v.join(',') : v;
  const signedHeaders = signed.split(';');
  if (!signedHeaders.includes('host') || !signedHeaders.includes('x-amz-date') ||
      !signedHeaders.includes('x-amz-content-sha256')) {
    return deny(ctx, 403, 'AccessDenied', 'host, x-amz-date and x-amz-content-sha256 must be signed');
  }
  const date = headers['x-amz-date'] || '';
  if (date.slice(0, 8) !== day) return deny(ctx, 403, 'SignatureDoesNotMatch', 'the date is not the scope day');
  const raw = ctx.req.url;
  const q = raw.indexOf('?');
  const rawPath = q < 0 ? raw : raw.slice(0, q);
  const query = q < 0 ? [] : raw.slice(q + 1).split('&').filter(Boolean).map(p => {
    const e = p.indexOf('=');
    const dec = s => decodeURIComponent(s.replace(/\+/g, ' '));
    return e < 0 ? [dec(p), ''] : [dec(p.slice(0, e)), dec(p.slice(e + 1))];
  });
  const payloadHash = headers['x-amz-content-sha256'];
  const expected = signature({
    method: ctx.method, path: decodeURIComponent(rawPath), query, headers, signedHeaders, payloadHash, date,
    region, service, secret: account.accessKeys.get(accessKey),
  });
  if (expected !== given) {
    return deny(ctx, 403, 'SignatureDoesNotMatch', 'the request signature does not match');
  }
  if (/^[0-9a-f]{64}$/.test(payloadHash)) {
    const chunks = [];
    for await (const c of ctx.req) chunks.push(c);
    const body = Buffer.concat(chunks);
    if (sha256(body) !== payloadHash) {
      return deny(ctx, 400, 'XAmzContentSHA256Mismatch', 'the body does not match x-amz-content-sha256');
    }
    ctx.req = Readable.from([body]);
  }
  return next();
}

async function main() {
  const port = Number(arg('port', '4568'));
  const directory = arg('directory');
  const bucket = arg('bucket');
  if (!directory || !bucket) {
    console.error('usage: s3rver-sigv4.js --port P --directory DIR --bucket NAME [--credentials-file FILE]');
    process.exit(2);
  }
  const creds = arg('credentials-file');
  if (creds) {
    const [access, secret] = fs.readFileSync(creds, 'utf8').split(/\r?\n/).map(s => s.trim());
    AWSAccount.DUMMY_ACCOUNT.revokeAccessKey('S3RVER');
    AWSAccount.DUMMY_ACCOUNT.createKeyPair(access, secret);
  }
  fs.mkdirSync(directory, { recursive: true });
  const server = new S3rver({
    address: '127.0.0.1', port, directory, silent: true, vhostBuckets: false,
    configureBuckets: [{ name: bucket, configs: [] }],
  });
  server.middleware.unshift(verify);
  const address = await server.run();
  console.log('listening on ' + address.address + ':' + address.port);
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
}

main().catch(e => {
  console.error('s3rver-sigv4: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
