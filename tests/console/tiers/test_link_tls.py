"""A link over mutual TLS: the province serves HTTPS and requires a client
certificate from its CA; the enterprise's uplink trusts the province's CA
and presents its own certificate. Without the certificate, no connection."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.tiers import ROOT, Console, free_port, tier_file, wait_until

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="openssl (the command) makes the test certificates")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    paths = {name: folder / f"{name}.pem" for name in
             ("ca", "ca-key", "server", "server-key", "client", "client-key")}
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=icswatch test CA", "-keyout", str(paths["ca-key"]), "-out", str(paths["ca"]))
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage="
                                       "serverAuth"),
                            ("client", "extendedKeyUsage=clientAuth")):
        request = folder / f"{name}.csr"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", str(paths[f"{name}-key"]), "-out", str(request))
        (folder / f"{name}.ext").write_text(extension + "\n")
        _openssl("x509", "-req", "-in", str(request), "-CA", str(paths["ca"]), "-CAkey",
                 str(paths["ca-key"]), "-CAcreateserial", "-days", "2", "-out",
                 str(paths[name]), "-extfile", str(folder / f"{name}.ext"))
    return paths


def test_alerts_cross_a_mutual_tls_link(tmp_path: Path) -> None:
    certs = _certificates(tmp_path)
    trusted = ssl.create_default_context(cafile=str(certs["ca"]))
    trusted.load_cert_chain(str(certs["client"]), str(certs["client-key"]))

    def console(name: str) -> Console:
        folder = tmp_path / name
        folder.mkdir()
        return Console(name, folder, free_port(), {**os.environ,
                                                   "XDG_DATA_HOME": str(folder / "xdg")})

    province, enterprise = console("prov-zj"), console("ent-a")
    province.context = trusted
    province.serve_options = ["--tls-cert", str(certs["server"]), "--tls-key",
                              str(certs["server-key"]), "--tls-client-ca", str(certs["ca"])]
    tier_file(Path(province.tier_file), "province", "prov-zj", "Zhejiang")
    province.icswatch("tier", "add-child", "ent-a", "--name", "A", "--tier",
                      province.tier_file, "--state", province.state, "--token-file",
                      str(enterprise.folder / "uplink.token"))
    tier_file(Path(enterprise.tier_file), "enterprise", "ent-a", "A", province="prov-zj",
              uplink=province.url, token_file=enterprise.folder / "uplink.token",
              tls={"ca": certs["ca"], "client_cert": certs["client"],
                   "client_key": certs["client-key"]})
    for member in (province, enterprise):
        member.add_user("admin", "admin")
    try:
        province.start()
        enterprise.start()
        # Without a client certificate the province does not even answer.
        bare = ssl.create_default_context(cafile=str(certs["ca"]))
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            urllib.request.urlopen(province.url + "/api/openapi.json", timeout=5,
                                   context=bare).read()
        enterprise.icswatch("replay", "--format", "none", "--no-progress", "--store",
                            enterprise.store,
                            str(ROOT / "pcaps" / "modbus" / "attack-recon-then-write.pcapng"))
        expected = enterprise.alert_ids()
        assert expected
        wait_until(lambda: province.alert_ids().keys() == expected.keys(),
                   "the alerts at the province over mutual TLS")
    finally:
        enterprise.stop()
        province.stop()
