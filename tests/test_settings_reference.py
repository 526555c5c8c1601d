"""The settings' names and their reference: docs/configuration.md is what app/settings_reference.py
renders now; every variable carries its group's prefix; every old name still sets its field, and
the new name wins when both are set."""

from __future__ import annotations

import json
import logging
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from app.settings import Settings, deprecated_in, environment_variables, groups, variable_names
from app.settings_reference import COMMAND, render
from tests.support.server import REPO

PAGE = REPO / "docs" / "configuration.md"
# A variable that is not PREFIX + FIELD: the name it always had, kept for the field it names.
NAMED_OTHERWISE = {"models.user_manifest_file": "MODELS_USER_MANIFEST"}
# An old name that is another field's own variable too: it sets both until the new one is set.
SHARED_OLD_NAMES = {"FETCH_USER_AGENT": "gbif.user_agent"}

FIELDS = [
    (group, cls, field, info) for group, cls in groups().items() for field, info in cls.model_fields.items()
]
RENAMED = [
    (group, cls, field, info, old)
    for group, cls, field, info in FIELDS
    for old in variable_names(cls, field, info)[1]
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the process's environment, no .env from the working directory."""
    for name in environment_variables():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def sample(info: FieldInfo, variant: int = 0) -> tuple[str, Any]:
    """A value for the field other than its default (``variant`` 1: another one): the variable's
    text and what the field then holds (secrets revealed)."""
    annotation = info.annotation
    args = typing.get_args(annotation)
    if type(None) in args:
        (annotation,) = [arg for arg in args if arg is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        value = [v for v in typing.get_args(annotation) if v != info.default][variant]
        return value, value
    if origin is list:
        items = [f"probe-{variant}.example"]
        return json.dumps(items), items
    if annotation is bool:  # the defaults are false: variant 1 is the default, said explicitly
        return ("true", True) if variant == 0 else ("false", False)
    if annotation is int:
        base = 20 if info.default_factory is not None else 2 if info.default is None else info.default
        value = base + 1 + variant
        return str(value), value
    if annotation is float:
        value = info.default / (2 + variant) if info.default else 1.0 + variant
        return repr(value), value
    if annotation is Path:
        return f"/probe/{variant}", Path(f"/probe/{variant}")
    return f"probe-{variant}", f"probe-{variant}"


def revealed(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list):
        return [revealed(v) for v in value]
    return value


def read(cls: type[BaseSettings], field: str) -> Any:
    return revealed(getattr(cls(), field))


def test_the_reference_page_is_up_to_date():
    assert PAGE.exists(), f"{PAGE} is missing: run `{COMMAND}`"
    assert PAGE.read_text(encoding="utf-8") == render(), (
        f"{PAGE.relative_to(REPO)} is out of date with app/settings.py: run `{COMMAND}` "
        "(python -m app.settings_reference docs/configuration.md) and commit the page"
    )


def test_every_group_and_field_is_described():
    for group, cls in groups().items():
        assert (cls.__doc__ or "").strip(), (
            f"{cls.__name__} ({group}) needs a docstring: the page's introduction"
        )
        assert ":" in (cls.__doc__ or ""), f"{cls.__name__}: the docstring opens 'what reads it: ...'"
    missing = [f"{group}.{field}" for group, _, field, info in FIELDS if not info.description]
    assert not missing, f"fields without a description (the reference's last column): {missing}"


def test_every_variable_carries_its_group_prefix():
    prefixes = {group: str(cls.model_config.get("env_prefix", "")) for group, cls in groups().items()}
    assert all(prefixes.values()), prefixes
    assert len(set(prefixes.values())) == len(prefixes), prefixes  # one prefix per group
    for group, cls, field, info in FIELDS:
        name, _ = variable_names(cls, field, info)
        assert name.startswith(prefixes[group]), f"{group}.{field} is read from {name}"
        expected = NAMED_OTHERWISE.get(f"{group}.{field}", f"{prefixes[group]}{field}".upper())
        assert name == expected, f"{group}.{field} is read from {name}, not {expected}"


def test_every_name_maps_to_its_field():
    names = environment_variables()
    for group, cls, field, info in FIELDS:
        name, old = variable_names(cls, field, info)
        assert names[name] == f"{group}.{field}"
        for alias in old:
            if alias not in SHARED_OLD_NAMES:
                assert names[alias] == f"{group}.{field}", alias
    assert names["MAX_QUEUE"] == "admission.max_queue" and names["HOST"] == "server.host"
    assert names["GBIF_PRIOR_TIMEOUT"] == "geo_prior.timeout"
    assert names["FETCH_USER_AGENT"] == "fetch.user_agent"  # its own field first


@pytest.mark.parametrize(
    ("cls", "field", "info", "old"),
    [pytest.param(cls, field, info, old, id=old) for _, cls, field, info, old in RENAMED],
)
def test_an_old_name_still_sets_its_field(monkeypatch, cls, field, info, old):
    text, value = sample(info)
    assert read(cls, field) != value
    monkeypatch.setenv(old, text)
    assert read(cls, field) == value


@pytest.mark.parametrize(
    ("cls", "field", "info", "old"),
    [pytest.param(cls, field, info, old, id=old) for _, cls, field, info, old in RENAMED],
)
def test_the_new_name_wins_over_the_old(monkeypatch, cls, field, info, old):
    name, _ = variable_names(cls, field, info)
    (old_text, _), (new_text, new_value) = sample(info, 0), sample(info, 1)
    monkeypatch.setenv(old, old_text)
    monkeypatch.setenv(name, new_text)
    assert read(cls, field) == new_value


def test_new_names_set_their_fields_through_settings(monkeypatch):
    monkeypatch.setenv("ADMISSION_MAX_QUEUE", "7")
    monkeypatch.setenv("LISTS_MAX_BYTES", "1000")
    monkeypatch.setenv("GEO_PRIOR_CELL_DEG", "0.25")
    monkeypatch.setenv("SERVER_PORT", "9000")
    settings = Settings()
    assert settings.admission.max_queue == 7 and settings.lists.max_bytes == 1000
    assert settings.geo_prior.cell_deg == 0.25 and settings.server.port == 9000


def test_a_bare_field_name_sets_nothing(monkeypatch):
    """``TIMEOUT`` or ``DIR`` in the environment is no setting (unless it was one before the groups,
    as ``HOST`` was)."""
    names = environment_variables()
    for _, cls, field, info in FIELDS:
        if field.upper() in names:
            continue
        text, value = sample(info)
        monkeypatch.setenv(field.upper(), text)
        assert read(cls, field) != value, f"{field.upper()} set {cls.__name__}.{field}"
        monkeypatch.delenv(field.upper())


def test_groups_are_set_in_code_by_field_name(tmp_path):
    from app.settings import AdmissionSettings, ListSettings, ModelSettings

    settings = Settings(
        models=ModelSettings(manifest=tmp_path / "m.toml"),
        admission=AdmissionSettings(inference_workers=1),
        lists=ListSettings(dir=tmp_path, max_bytes=10),
    )
    assert settings.models.manifest == tmp_path / "m.toml"
    assert settings.models.user_manifest == tmp_path / "local.toml"
    assert settings.admission.inference_workers == 1 and settings.lists.dir == tmp_path


def test_old_names_in_use_are_logged(monkeypatch, caplog):
    monkeypatch.setenv("MAX_QUEUE", "3")
    monkeypatch.setenv("FETCH_USER_AGENT", "agent/1")  # fetch's own variable: not deprecated
    with caplog.at_level(logging.WARNING, logger="app.settings"):
        settings = Settings()
    assert settings.admission.max_queue == 3
    assert settings.fetch.user_agent == settings.gbif.user_agent == "agent/1"
    assert deprecated_in({"MAX_QUEUE": "3", "FETCH_USER_AGENT": "x"}) == {"MAX_QUEUE": "ADMISSION_MAX_QUEUE"}
    warned = [r.getMessage() for r in caplog.records]
    assert warned == ["MAX_QUEUE is a deprecated name: set ADMISSION_MAX_QUEUE instead"]


def test_old_names_in_the_env_file_are_logged_too(monkeypatch, caplog, tmp_path):
    """.env is read by every group; an old name there is as deprecated as in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MIN_SCORE", raising=False)
    monkeypatch.delenv("RANKING_MIN_SCORE", raising=False)
    (tmp_path / ".env").write_text("MIN_SCORE=0.3\n")
    with caplog.at_level(logging.WARNING, logger="app.settings"):
        settings = Settings()
    assert settings.ranking.min_score == 0.3
    warned = [r.getMessage() for r in caplog.records]
    assert "MIN_SCORE is a deprecated name: set RANKING_MIN_SCORE instead" in warned
