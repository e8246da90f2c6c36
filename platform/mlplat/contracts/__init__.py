"""Stage contracts: one `typing.Protocol` per stage kind, each in its own module.

A plugin implements exactly one contract. Its entry point resolves to a
`mlplat.registry.PluginSpec` whose factory, called with the plugin's validated pydantic
config, returns an object satisfying the contract. Contracts take and return plain data
(numpy, pandas, dataclasses), never runner state, so the same plugin runs in-process,
in kfp.local and on a cluster.
"""

from mlplat.contracts.context import StepContext

__all__ = ["StepContext"]
