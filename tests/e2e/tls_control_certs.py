"""A throwaway CA for TLS tests, made with the openssl CLI at test time (no key is ever committed).

    ca = TestCA(tmpdir / "ca")                     # ca.cert: PEM CA certificate
    server = ca.issue("server", ips=["127.0.0.1"], dns=["localhost"])   # .cert .key (paths)
    client = ca.issue("dp-1", client=True)          # CN=dp-1, DNS SAN dp-1, clientAuth
    ca.context(client)                              # an ssl.SSLContext trusting the CA, with that cert

ECDSA P-256 keys (quick to generate). scripts/ha-cluster has a shell twin of this (same openssl calls).
"""
import ssl
import subprocess
from pathlib import Path


def _run(*argv):
    r = subprocess.run(list(map(str, argv)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise AssertionError("openssl %s failed: %s" % (" ".join(map(str, argv[1:3])), r.stderr.decode()))


class Issued:
    def __init__(self, cert, key):
        self.cert = str(cert)
        self.key = str(key)


class TestCA:
    __test__ = False  # not a pytest class

    def __init__(self, directory, name="Portico test CA"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = str(self.dir / "ca.key")
        self.cert = str(self.dir / "ca.crt")
        _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=" + name,
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, cn, ips=(), dns=(), client=False, san=True):
        """A leaf certificate for `cn`: a server one (SANs `ips` and `dns`) or, with client=True, a client one
        (DNS SAN `cn` unless san=False, then the CN alone names it)."""
        key = self.dir / (cn + ".key")
        csr = self.dir / (cn + ".csr")
        cert = self.dir / (cn + ".crt")
        ext = self.dir / (cn + ".ext")
        names = ["IP:" + ip for ip in ips] + ["DNS:" + d for d in dns]
        if client and san:
            names.append("DNS:" + cn)
        lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                 "extendedKeyUsage=" + ("clientAuth" if client else "serverAuth,clientAuth")]
        if names:
            lines.append("subjectAltName=" + ",".join(names))
        ext.write_text("\n".join(lines) + "\n")
        _run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
        _run("openssl", "x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key, "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", ext)
        return Issued(cert, key)

    def context(self, client_cert=None):
        """A client SSLContext that verifies against this CA (host names checked), with an optional client
        certificate (an Issued)."""
        ctx = ssl.create_default_context(cafile=self.cert)
        if client_cert is not None:
            ctx.load_cert_chain(client_cert.cert, client_cert.key)
        return ctx
