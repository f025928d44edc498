"""A real container registry on loopback for the tests: Debian's `docker-registry`
(the reference distribution registry) serving HTTPS with a throw-away CA and
basic auth from an htpasswd file with bcrypt hashes (`htpasswd -B`).

    with RegistryServer(tmp) as reg:
        reg.address        # 127.0.0.1:PORT
        reg.ca_file        # the CA that signed its certificate (PEM)
        reg.user, reg.password

The registry process is stopped and its storage removed when the block ends.
"""
from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

READY_TIMEOUT_S = 30


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 and localhost signed by it, valid for a day.
    Returns (CA certificate, server certificate, server key), all PEM."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key, server_key = _key(), _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "npuenv test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
              .issuer_name(ca_name).public_key(server_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
              .not_valid_after(now + dt.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                          x509.DNSName("localhost")]), critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.crt", directory / "server.crt", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem_key(server_key))
    paths[2].chmod(0o600)
    return paths


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RegistryServer:
    def __init__(self, directory: Path, user: str = "npuenv", password: str = "s3cret-for-tests"):
        self.dir, self.user, self.password = Path(directory), user, password
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> "RegistryServer":
        binary = shutil.which("docker-registry")
        if binary is None or shutil.which("htpasswd") is None:
            raise RuntimeError("docker-registry and htpasswd are needed (Debian packages docker-registry and "
                               "apache2-utils): run `make setup` (tests/sim/setup-engine.sh)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_file, cert, key = make_certificates(self.dir / "tls")
        htpasswd = self.dir / "htpasswd"
        subprocess.run(["htpasswd", "-B", "-i", "-c", str(htpasswd), self.user], input=self.password, text=True,
                       check=True, capture_output=True)
        self.port = _free_port()
        config = {"version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
                  "storage": {"filesystem": {"rootdirectory": str(self.dir / "storage")},
                              "delete": {"enabled": True}},
                  "http": {"addr": self.address, "tls": {"certificate": str(cert), "key": str(key)}},
                  "auth": {"htpasswd": {"realm": "npuenv-test", "path": str(htpasswd)}}}
        (self.dir / "config.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log = (self.dir / "registry.log").open("w")
        self.proc = subprocess.Popen([binary, "serve", str(self.dir / "config.yml")], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited ({self.proc.returncode}): "
                                   f"{(self.dir / 'registry.log').read_text()[-2000:]}")
            try:
                self.get("/v2/", auth=False)
            except urllib.error.HTTPError as e:
                if e.code == 401:       # up, and asking for credentials
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not answer on {self.address} within {READY_TIMEOUT_S} s")
            time.sleep(0.2)

    def get(self, path: str, auth: bool = True, accept: str | None = None) -> tuple[dict, bytes]:
        """An HTTPS GET against the registry's API (the test CA verifies it); (headers, body)."""
        request = urllib.request.Request(f"https://{self.address}{path}")
        if auth:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        if accept:
            request.add_header("Accept", accept)
        context = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return dict(response.headers), response.read()

    def tags(self, repository: str) -> list[str]:
        """The repository's tags; [] when the registry has never heard of it."""
        try:
            return json.loads(self.get(f"/v2/{repository}/tags/list")[1]).get("tags") or []
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []
            raise

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
