"""Each setting reads its one environment variable and nothing else: the shell's HOME is not
RECO_HOME, AUTH is not RECO_AUTH, MODEL_URI is not RECO_MODEL_URI (pydantic-settings reads every
alias of an AliasChoices, case-insensitively)."""

from __future__ import annotations

import os

import pytest

from service.config import ServiceSettings, load_service_settings
from training.settings import _default_home


def test_a_hostile_environment_does_not_become_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    fields = ServiceSettings.model_fields
    variables = {str(f.validation_alias) for f in fields.values()}
    for name in list(os.environ):
        if name.upper() in variables:
            monkeypatch.delenv(name)
    for name in fields:  # each field's own name, as a shell or a container may set it
        for spelling in (name, name.upper(), name.removesuffix("_json").upper()):
            monkeypatch.setenv(spelling, "junk")
    monkeypatch.setenv("HOME", "/somewhere")

    settings = load_service_settings()  # junk read into any typed field would stop here

    assert settings.home == _default_home().resolve()
    assert (settings.auth, settings.model_uri, settings.api_keys) == ("enabled", "models:/reco@champion", {})
    assert settings.model_dump() == ServiceSettings.model_validate({"RECO_HOME": settings.home}).model_dump()
