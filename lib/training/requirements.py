"""Whether the training requirements (requirements-train.txt) are installed, asked before importing them.

finetune.py --trainer trl and the in-process model functions (lib/training/lora.py, lib/training/localmodel.py) need
torch,
transformers, peft, trl, accelerate and datasets; the rest of the toolkit does not, so requirements.txt stays light.
"""

from __future__ import annotations

import importlib
import importlib.util

PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets")
INSTALL = "pip install -r requirements-train.txt"


def missing(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """The packages that cannot be imported, each with the import error's reason when it is not plain absence
    (a broken or mismatched install fails at import too). Without torch the others are only looked for, not
    imported: they are built on it, and importing them then prints their own warnings (transformers: "PyTorch was
    not found ...") around the one line that says what to install."""
    out: list[str] = []
    for name in packages:
        if out and out[0].split(" ")[0] == "torch":
            if not _installed(name):
                out.append(name)
            continue
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            out.append(name if exc.name == name else f"{name} ({exc})")
        except Exception as exc:  # any import failure means the package is unusable
            out.append(f"{name} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    return out


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, or one without a spec
        return False


def problem(purpose: str = "finetune.py --trainer trl") -> str | None:
    """None when everything imports, else the one line that says what is missing and how to install it."""
    gone = missing()
    if not gone:
        return None
    return (f"the training requirements of {purpose} are missing or broken ({', '.join(gone)}): install them with "
            f"{INSTALL} (in the project's virtual environment)")
