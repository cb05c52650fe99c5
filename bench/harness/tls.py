"""A throwaway CA and one leaf certificate for localhost / 127.0.0.1 signed by it, made with
the openssl command: what federating servers on loopback present and trust. P-256 keys:
quick to make, and accepted by rustls, OpenSSL and Twisted alike."""

import dataclasses
import os
import secrets
import subprocess

OPENSSL_CONFIG = """\
# Self-contained, so the machine's openssl.cnf adds no extensions of its own.
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


@dataclasses.dataclass(frozen=True)
class Certificates:
    ca: str  # the CA certificate, the only one the servers trust
    certificate: str  # leaf for DNS:localhost and IP:127.0.0.1, served by every server
    private_key: str


def run_openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{done.stderr}")


def make_certificates(directory: str) -> Certificates:
    """Writes ca.pem, leaf.pem and leaf.key (valid 7 days) into `directory`."""
    def path(name: str) -> str:
        return os.path.join(directory, name)

    with open(path("openssl.cnf"), "w") as f:
        f.write(OPENSSL_CONFIG)
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run_openssl("req", "-x509", "-new", "-config", path("openssl.cnf"), "-extensions", "ca",
                *new_key, "-keyout", path("ca.key"), "-out", path("ca.pem"),
                "-days", "7", "-subj", "/CN=Myelin test CA")
    run_openssl("req", "-new", "-config", path("openssl.cnf"), *new_key,
                "-keyout", path("leaf.key"), "-out", path("leaf.csr"), "-subj", "/CN=localhost")
    run_openssl("x509", "-req", "-in", path("leaf.csr"), "-CA", path("ca.pem"),
                "-CAkey", path("ca.key"), "-set_serial", str(secrets.randbits(63)),
                "-days", "7", "-extfile", path("openssl.cnf"), "-extensions", "leaf",
                "-out", path("leaf.pem"))
    return Certificates(path("ca.pem"), path("leaf.pem"), path("leaf.key"))


def myelin_federation_config(workdir: str, port: int, federation_port: int,
                             certificates: Certificates, extra: str = "") -> str:
    """A Myelin TOML config federating as localhost:<federation_port> with the test CA;
    returns its path. Strings are written as JSON strings, which TOML reads alike."""
    import json
    q = json.dumps
    text = f"""\
server_name = {q(f"localhost:{federation_port}")}
listen = {q(f"127.0.0.1:{port}")}
data_dir = {q(os.path.join(workdir, "data"))}

[registration]
enabled = true

[rate_limits]
enabled = false  # tests and benchmarks must not wait on 429s

[federation]
enabled = true
listen = {q(f"127.0.0.1:{federation_port}")}
ip_range_allowlist = ["127.0.0.0/8"]  # the peers are on loopback, denied by default

[federation.tls]
certificate = {q(certificates.certificate)}
private_key = {q(certificates.private_key)}
extra_ca_file = {q(certificates.ca)}
{extra}"""
    path = os.path.join(workdir, "myelin.toml")
    with open(path, "w") as f:
        f.write(text)
    return path
