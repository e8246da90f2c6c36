"""mlplat's built-in plugins, one subpackage per integration.

Each subpackage's `__init__` is light: a pydantic config model and a `PluginSpec` whose
factory points at the heavy implementation module. They are found only through the entry
points in pyproject.toml, exactly like third-party plugins.
"""
