"""Plugins: formats, ops and variants from other installed packages, without a fork.

An installed distribution declares an entry point in the group `quantbench.plugins` whose value
names a module:

    [project.entry-points."quantbench.plugins"]
    my_kernels = "my_package.quantbench_plugin"

That module is imported once, after the built-in modules, the first time the format or kernel
registry is read, and registers with the decorators the built-in modules use
(`quantbench.kernels.formats.register`, `quantbench.kernels.registry.variant`, `register_op`).
"""
from __future__ import annotations

import importlib
import importlib.metadata

from quantbench.kernels.errors import UserError

PLUGIN_GROUP = "quantbench.plugins"

_loaded = False


class PluginError(UserError):
    """An installed plugin that could not be imported."""


def plugin_entry_points() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=PLUGIN_GROUP), key=lambda ep: ep.name)


def load_plugins() -> None:
    """Import each plugin module once; a broken plugin is an error that names it."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in plugin_entry_points():
        try:
            importlib.import_module(ep.module)
        except Exception as exc:
            raise PluginError(f"plugin {ep.name!r} (module {ep.module}, group {PLUGIN_GROUP}): "
                              f"{type(exc).__name__}: {exc}") from exc
