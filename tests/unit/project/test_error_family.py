"""One error family: every error class of the registry descends from ``RegistryError`` and
says, on its family root at least, whether retrying can succeed (``retriable``)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import consumers
import schemas
import streams
from schemas.errors import RegistryError


def _error_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in (schemas, streams, consumers):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith(".__main__"):  # running it is what importing it does
                continue
            module = importlib.import_module(info.name)
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                    found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[name] for name in sorted(found)]


ERRORS = _error_classes()


def test_the_registry_defines_error_classes_to_check() -> None:
    assert len(ERRORS) >= 30


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_error_descends_from_the_registry_root_with_a_boolean_retriable(
        cls: type[BaseException]) -> None:
    assert issubclass(cls, RegistryError)
    assert isinstance(cls.retriable, bool)  # type: ignore[attr-defined]


@pytest.mark.parametrize("cls", [c for c in ERRORS if RegistryError in c.__bases__],
                         ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_family_root_states_retriable_itself(cls: type[BaseException]) -> None:
    assert "retriable" in vars(cls), f"{cls.__qualname__} inherits retriable silently"


def test_outages_are_retriable_and_bad_input_is_not() -> None:
    from consumers.clickhouse.errors import ClickHouseRefused, ClickHouseUnavailable
    from schemas.errors import ValidationError
    from streams.kafka.errors import BrokerUnavailable, ReplicationRefused
    from streams.lender.errors import PublisherUnavailable, WrongLender
    from streams.settings import SettingsError

    assert [c.retriable for c in (ClickHouseUnavailable, BrokerUnavailable,
                                  PublisherUnavailable)] == [True, True, True]
    assert [c.retriable for c in (ClickHouseRefused, ReplicationRefused, WrongLender,
                                  ValidationError, SettingsError)] == [False] * 5


#: errors that live beside the one thing that raises them (the room is that module)
OWN_MODULE = {"streams.settings.SettingsError"}


@pytest.mark.parametrize("cls", [c for c in ERRORS if not c.__qualname__.startswith("_")],
                         ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_public_error_is_defined_in_its_rooms_errors_module(
        cls: type[BaseException]) -> None:
    name = f"{cls.__module__}.{cls.__qualname__}"
    assert cls.__module__.endswith(".errors") or name in OWN_MODULE, name
