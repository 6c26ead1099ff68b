"""``API_TOKENS`` parsing: scopes per token, the safe default, refusals that never echo a token."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.settings import (
    DEFAULT_SCOPES,
    Scope,
    Settings,
    SettingsError,
    TokenGrant,
    parse_api_tokens,
)

ALL = frozenset(Scope)


def test_scopes_are_read_per_token_and_a_bare_token_may_only_query_frequency() -> None:
    grants = parse_api_tokens(" bank-a:ta , counter:tc:subject_report+erasure,"
                              "reg:tr:erasure,,risk:tf:frequency ")
    assert grants == {
        "ta": TokenGrant("bank-a", frozenset({Scope.FREQUENCY})),
        "tc": TokenGrant("counter", frozenset({Scope.SUBJECT_REPORT, Scope.ERASURE})),
        "tr": TokenGrant("reg", frozenset({Scope.ERASURE})),
        "tf": TokenGrant("risk", frozenset({Scope.FREQUENCY})),
    }
    assert frozenset({Scope.FREQUENCY}) == DEFAULT_SCOPES


def test_local_dev_token_has_every_scope_only_when_nothing_is_configured() -> None:
    local = Settings(registry_mode="local", api_tokens="")
    assert local.api_grants == {"local-dev-token": TokenGrant("local", ALL)}
    assert local.institution_tokens == {"local-dev-token": "local"}
    configured = Settings(registry_mode="local", api_tokens="bank-a:ta")
    assert configured.api_grants == {"ta": TokenGrant("bank-a", DEFAULT_SCOPES)}
    production = Settings(registry_mode="production", pseudonym_key="k", api_tokens="")
    assert production.api_grants == {}


def test_token_with_scope_picks_the_first_holder() -> None:
    settings = Settings(api_tokens="bank-a:ta,counter:tc:subject_report,reg:tr:erasure")
    assert settings.token_with_scope(Scope.SUBJECT_REPORT) == "tc"
    assert settings.token_with_scope(Scope.ERASURE) == "tr"
    assert settings.token_with_scope(Scope.FREQUENCY) == "ta"
    assert Settings(api_tokens="reg:tr:erasure").token_with_scope(Scope.FREQUENCY) is None


@pytest.mark.parametrize(("raw", "message"), [
    ("bank-a:secret-1:erase", "unknown scope erase"),
    ("bank-a:secret-1:frequency+", "unknown scope (empty)"),
    ("bank-a:secret-1:", "expected institution:token"),
    (":secret-1", "expected institution:token"),
    ("bank-a:secret-1:x:y", "expected institution:token"),
    ("bank-a", "expected institution:token"),
    ("bank-a:secret-1,bank-b:secret-1", "item 2 (bank-b): token configured twice"),
])
def test_doubtful_configurations_are_refused_without_echoing_tokens(raw: str, message: str
                                                                    ) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_api_tokens(raw)
    with pytest.raises(ValidationError) as refused:
        Settings(api_tokens=raw)
    assert "secret-1" not in str(refused.value)
