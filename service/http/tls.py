"""The HTTP port's TLS: an ssl.SSLContext from the same security settings as the gRPC port's credentials."""

from __future__ import annotations

import ssl

from service.settings import SecuritySettings


def server_ssl_context(security: SecuritySettings) -> ssl.SSLContext | None:
    """TLS (TLS 1.2 or newer) when tls_cert_file/tls_key_file are set, else None (plaintext).

    With tls_client_ca_file set, clients must present a certificate signed by that CA (mutual TLS):
    handshakes without one fail before any request is read. Reads the files once; raises OSError
    or ssl.SSLError if they cannot be read or do not match.
    """
    if security.tls_cert_file is None or security.tls_key_file is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(security.tls_cert_file, security.tls_key_file)
    context.set_alpn_protocols(["http/1.1"])
    if security.tls_client_ca_file is not None:
        context.load_verify_locations(security.tls_client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
