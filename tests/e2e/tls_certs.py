"""Test-time certificates for every TLS test (python3-cryptography): CAs, server and client leaves (ECDSA P-256
or RSA 2048, any names, any validity). Nothing is committed: every run generates its own keys.

Three views of the same generator, one per way the tests use certificates:
    ca = make_ca(); leaf = make_leaf(ca, "a.test", names=["a.test"])   # Cert objects: .cert/.key PEM text
    ca = Ca("origin CA"); cert_pem, key_pem = ca.issue("origin.test", dns=[...], ips=[...])
    ca = TestCA(tmpdir / "ca"); server = ca.issue("cp", ips=["127.0.0.1"])   # PEM files: .cert/.key paths
"""

import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key(kind):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Cert:
    def __init__(self, cert, key):
        self.x509 = cert
        self.key_obj = key
        self.cert = _pem_cert(cert)
        self.key = _pem_key(key)

    @property
    def cn(self):
        return self.x509.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value

    def write(self, directory, name):
        c = Path(directory) / (name + ".crt")
        k = Path(directory) / (name + ".key")
        c.write_text(self.cert)
        k.write_text(self.key)
        return c, k


def make_ca(cn="Portico Test CA", kind="ecdsa", days=2):
    key = _key(kind)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return Cert(cert, key)


def make_leaf(ca, cn, names=(), kind="ecdsa", expired=False, client=False, ips=(), usages=None):
    """A leaf signed by `ca` (a Cert): DNS SANs `names`, IP SANs `ips`; extended key usage clientAuth when
    `client`, else serverAuth, unless `usages` lists them."""
    key = _key(kind)
    now = datetime.datetime.now(datetime.timezone.utc)
    if expired:
        start, end = now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)
    else:
        start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    b = (x509.CertificateBuilder().subject_name(_name(cn))
         .issuer_name(ca.x509.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usages is None:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
    b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return Cert(b.sign(ca.key_obj, hashes.SHA256()), key)


class Ca:
    """A CA whose leaves come back as PEM text: issue() -> (cert PEM, key PEM)."""

    def __init__(self, cn):
        self._ca = make_ca(cn)

    @property
    def pem(self):
        return self._ca.cert

    def issue(self, cn, dns=(), ips=(), client=False):
        leaf = make_leaf(self._ca, cn, names=dns, ips=ips, client=client)
        return leaf.cert, leaf.key


def write(dirpath, name, text):
    p = Path(dirpath) / name
    p.write_text(text)
    return str(p)


class Issued:
    def __init__(self, cert, key):
        self.cert = str(cert)
        self.key = str(key)


class TestCA:
    """A CA kept as PEM files in `directory` (ca.crt, ca.key; leaves <cn>.crt/.key), for servers and clients
    that take paths (etcd, the control plane, Python's ssl)."""

    __test__ = False  # not a pytest class

    def __init__(self, directory, name="Portico test CA"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ca = make_ca(name)
        self.cert, self.key = map(str, self._ca.write(self.dir, "ca"))

    def issue(self, cn, ips=(), dns=(), client=False, san=True):
        """A leaf certificate for `cn`: a server one (SANs `ips` and `dns`, usable as a client too, as etcd's
        members are) or, with client=True, a client one (DNS SAN `cn` unless san=False, then the CN alone
        names it)."""
        names = list(dns) + ([cn] if client and san else [])
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH,
                                                                   ExtendedKeyUsageOID.CLIENT_AUTH]
        leaf = make_leaf(self._ca, cn, names=names, ips=ips, usages=usages)
        return Issued(*leaf.write(self.dir, cn))

    def context(self, client_cert=None):
        """A client SSLContext that verifies against this CA (host names checked), with an optional client
        certificate (an Issued)."""
        ctx = ssl.create_default_context(cafile=self.cert)
        if client_cert is not None:
            ctx.load_cert_chain(client_cert.cert, client_cert.key)
        return ctx
