"""Server credentials for the gRPC port: none (plaintext), TLS, or mutual TLS, from the security settings."""

from __future__ import annotations

import grpc

from service.settings import SecuritySettings


def server_credentials(security: SecuritySettings) -> grpc.ServerCredentials | None:
    """TLS credentials when tls_cert_file/tls_key_file are set (else None: plaintext).

    With tls_client_ca_file set, clients must present a certificate signed by that CA (mTLS);
    handshakes without one, or with another CA's, fail before any RPC runs. Reads the PEM
    files once, at start-up; raises OSError if one cannot be read. Settings validation already
    guarantees that the cert and key come together.
    """
    if security.tls_cert_file is None or security.tls_key_file is None:
        return None
    key_pair = (security.tls_key_file.read_bytes(), security.tls_cert_file.read_bytes())
    client_ca = security.tls_client_ca_file.read_bytes() if security.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [key_pair], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
