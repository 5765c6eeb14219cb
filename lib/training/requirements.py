"""Whether the training requirements (requirements-train.txt) are installed, asked before importing them.

finetune.py --trainer trl and the in-process model functions (lib/training/lora.py, lib/training/localmodel.py) need
torch,
transformers, peft, trl, accelerate and datasets; the rest of the toolkit does not, so requirements.txt stays light.
"""

from __future__ import annotations

import importlib

PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets")
INSTALL = "pip install -r requirements-train.txt"


def missing(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """The packages that cannot be imported, each with the import error's reason when it is not plain absence
    (a broken or mismatched install fails at import too)."""
    out = []
    for name in packages:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            out.append(name if exc.name == name else f"{name} ({exc})")
        except Exception as exc:  # any import failure means the package is unusable
            out.append(f"{name} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    return out


def problem(purpose: str = "finetune.py --trainer trl") -> str | None:
    """None when everything imports, else the one line that says what is missing and how to install it."""
    gone = missing()
    if not gone:
        return None
    return (f"the training requirements of {purpose} are missing or broken ({', '.join(gone)}): install them with "
            f"{INSTALL} (in the project's virtual environment)")
