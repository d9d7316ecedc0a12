"""Security settings and token loading: pairs of TLS files, token sources, refusals of unusable configs."""

from __future__ import annotations

import pydantic
import pytest

from service.rpc.auth import load_tokens
from service.settings import SecuritySettings, load_settings


def test_tokens_come_from_the_environment_as_a_json_list(monkeypatch):
    monkeypatch.setenv("BATCHWISE_SECURITY__AUTH_TOKENS", '["env-token-1", "env-token-2"]')
    settings = load_settings([])
    assert settings.security.auth_enabled
    assert load_tokens(settings.security) == ["env-token-1", "env-token-2"]


def test_token_file_lines_are_tokens_except_blanks_and_comments(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# rotated 2026-11\n\n  first-token \nsecond-token\n")
    security = SecuritySettings(auth_token_file=path, auth_tokens=["setting-token"])
    assert load_tokens(security) == ["setting-token", "first-token", "second-token"]


def test_auth_is_off_without_tokens():
    assert not SecuritySettings().auth_enabled


@pytest.mark.parametrize("content", ["", "# only a comment\n\n"])
def test_an_empty_token_file_is_refused(tmp_path, content):
    path = tmp_path / "tokens"
    path.write_text(content)
    with pytest.raises(ValueError, match="holds no token"):
        load_tokens(SecuritySettings(auth_token_file=path))


@pytest.mark.parametrize("token", ["", "two words"])
def test_unusable_tokens_are_refused(token):
    with pytest.raises(ValueError, match="no whitespace"):
        load_tokens(SecuritySettings(auth_tokens=[token]))


@pytest.mark.parametrize("files", [
    {"tls_cert_file": "cert.pem"},
    {"tls_key_file": "key.pem"},
    {"tls_client_ca_file": "ca.pem"},
], ids=["cert-only", "key-only", "client-ca-without-server-cert"])
def test_incomplete_tls_settings_are_refused(files):
    with pytest.raises(pydantic.ValidationError):
        SecuritySettings(**files)
