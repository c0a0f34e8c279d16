"""Each function names the settings it cannot work without (REQUIRED_SETTINGS) and checks them at
import; template.yaml gives every function those settings, and sets no variable the code never reads."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from types import ModuleType
from typing import Any

import pytest

from devstack import aws, template
from devstack.lambdas import ensure_layer_on_path

FUNCTIONS = sorted(template.functions())
_loaded = itertools.count()


def function_environment(logical_id: str) -> dict[str, Any]:
    """What Lambda gives the function: the Globals and its own variables."""
    return {**template.global_environment(), **template.function_environment(logical_id)}


def load(logical_id: str) -> ModuleType:
    """The function's handler module, imported afresh as Lambda does."""
    ensure_layer_on_path()
    function = template.functions()[logical_id]
    path = function.code_uri / f"{function.handler.rsplit('.', 1)[0]}.py"
    name = f"agentplane_settings_{logical_id}_{next(_loaded)}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


@pytest.fixture
def deployed_as(monkeypatch: pytest.MonkeyPatch, stack: aws.Resources):
    """Set the environment to exactly what the template gives one function (every other setting unset)."""
    from agentplane.settings import Settings, get_settings

    def deploy(logical_id: str, without: str | None = None) -> None:
        for field in Settings.model_fields.values():
            monkeypatch.delenv(str(field.alias), raising=False)
        for name, value in function_environment(logical_id).items():
            if name != without:
                monkeypatch.setenv(name, aws.resolve(value, stack))
        get_settings.cache_clear()

    yield deploy
    get_settings.cache_clear()


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_a_function_gets_every_setting_it_requires_and_fails_at_import_without_one(deployed_as, logical_id):
    from agentplane.settings import Settings, SettingsError, setting_name

    deployed_as(logical_id)
    required = load(logical_id).REQUIRED_SETTINGS
    assert all(name in Settings.model_fields for name in required), f"{logical_id}: {required}"
    variables = [setting_name(name) for name in required]
    missing = [name for name in variables if name not in function_environment(logical_id)]
    assert not missing, f"{logical_id} requires {missing}, which template.yaml does not give it"
    for variable in variables:
        deployed_as(logical_id, without=variable)
        with pytest.raises(SettingsError, match=variable):
            load(logical_id)


def test_every_variable_the_template_sets_is_a_setting_the_code_reads():
    from agentplane.logic.sse import StreamSettings
    from agentplane.settings import Settings

    read = {str(field.alias) for model in (Settings, StreamSettings) for field in model.model_fields.values()}
    unread = {
        (logical_id, name)
        for logical_id in FUNCTIONS
        for name in function_environment(logical_id)
        if name not in read and not name.startswith("POWERTOOLS_")
    }
    assert not unread, f"set by template.yaml but read by no code: {sorted(unread)}"
