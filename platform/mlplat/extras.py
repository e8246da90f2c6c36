"""Optional dependencies: which `mlplat[extra]` installs which integration library.

The core installs only what every command needs. Each integration (torch, KServe, KFP, a drift or
explanation library) is an extra in pyproject.toml; this table names the modules each one provides
so that a missing library is reported as the extra to install, never as a bare ImportError.
"""

from __future__ import annotations

import importlib.util

from mlplat.errors import PluginUnavailable

# extra -> the top-level modules it provides (pyproject.toml's optional-dependencies must agree: a test checks).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "serve": ("kserve", "kserve_storage"),
    "kfp": ("kfp", "kfp.kubernetes", "kubeflow_trainer_api", "kubeflow_katib_api"),
    "evidently": ("evidently",),
    "alibi": ("alibi",),
    "captum": ("captum",),
    "shap": ("shap",),
    "optuna": ("optuna",),
    "imbalance": ("imblearn",),
    "s3": ("s3fs",),
    "gcs": ("google.cloud.storage",),
    "vision": ("torchvision", "PIL"),
}

# extras that install another extra's libraries too (pyproject.toml lists torch in both)
INCLUDES: dict[str, tuple[str, ...]] = {"captum": ("torch",), "vision": ("torch",)}


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(extra: str) -> list[str]:
    """The modules of `extra` that cannot be imported here (empty when the extra is installed)."""
    return [m for m in EXTRA_MODULES[extra] if not _present(m)]


def install_hint(extra: str, distribution: str = "mlplat") -> str:
    return f"pip install '{distribution}[{extra}]'"


def require(extra: str, what: str) -> None:
    """Refuse `what` (a command or feature) with the extra to install when its libraries are missing."""
    missing = missing_modules(extra)
    if missing:
        raise PluginUnavailable(f"{what} needs {', '.join(missing)}, which is not installed: {install_hint(extra)}")


def extra_for_module(module: str) -> str | None:
    """The mlplat extra that provides `module` (a dotted name), if any."""
    top = module.split(".")[0]
    return next((extra for extra, modules in EXTRA_MODULES.items() if top in modules), None)
