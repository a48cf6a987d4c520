"""What each Bento carries: its entry service imports from the included files alone, no torch.

A container image holds only the files a bentofile includes (plus pip packages); the project's
editable install hides a missing file on a development machine. Each bundle's service module is
imported here in a fresh interpreter from a copy of exactly the included files, with the editable
finder removed, as in the image.
"""

import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from finbento.bentos import BUNDLES

ROOT = Path(__file__).resolve().parents[2]
IMPORT = """
import sys
sys.meta_path = [f for f in sys.meta_path if "editable" not in type(f).__module__]
sys.path_importer_cache.clear()
sys.path = [p for p in sys.path if "__editable__" not in p]
import importlib
module, cls = sys.argv[1].split(":")
svc = getattr(importlib.import_module(module), cls)
outside = sorted({m.split(".")[0] for m, mod in sys.modules.items()
                  if getattr(mod, "__file__", None) and sys.argv[2] not in mod.__file__
                  and m.split(".")[0] in {"finbento", "services", "monitoring", "scheduler",
                                          "trainers", "tests"}})
third = sorted({m.split(".")[0] for m, mod in list(sys.modules.items())
                if "site-packages" in (getattr(mod, "__file__", None) or "")})
print(" ".join(third))
print("torch" in sys.modules, outside, svc.name)
"""


def included(bentofile: Path) -> tuple[dict, list[Path]]:
    spec = yaml.safe_load(bentofile.read_text())
    files = {p for pattern in spec["include"] for p in ROOT.glob(pattern) if p.is_file()}
    excluded = [ROOT / e.rstrip("/") for e in spec.get("exclude", [])]
    return spec, sorted(p for p in files if not any(p.is_relative_to(e) for e in excluded))


#: Modules that libraries import only when present (the image runs without them), and
#: setuptools' path hook of this venv.
OPTIONAL = {"_distutils_hack", "PIL", "pyarrow", "cryptography", "sniffio"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_closure(packages: list[str]) -> set[str]:
    """Distributions the bentofile's packages install (their requirements, recursively)."""
    todo, seen = [Requirement(p.split("#")[0].strip()).name for p in packages], set()
    while todo:
        name = _norm(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_entry_service_imports_from_the_included_files_alone_without_torch(bundle, tmp_path):
    spec, files = included(ROOT / BUNDLES[bundle].bentofile)
    for path in files:
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    out = subprocess.run([sys.executable, "-c", IMPORT, spec["service"], str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    *_, third_party, last = out.stdout.strip().splitlines()
    torch_loaded, outside, name = last.split(" ", 2)
    installed = requirement_closure(spec["python"]["packages"])
    dists = metadata.packages_distributions()
    imported = [m for m in third_party.split() if m in dists and m not in OPTIONAL]
    missing = {m: dists[m] for m in imported if not {_norm(d) for d in dists[m]} & installed}
    assert not missing, f"imported but not installed by the bentofile's packages: {missing}"
    assert torch_loaded == "False"  # serving images carry no torch
    assert outside == "[]"  # every project module came from the copy
    assert name == BUNDLES[bundle].bento_name


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_bento_packages_no_tests_data_or_torch(bundle):
    spec, files = included(ROOT / BUNDLES[bundle].bentofile)
    rel = [p.relative_to(ROOT) for p in files]
    assert not [p for p in rel if p.parts[0] in ("tests", "data", "bench", ".finbento")]
    assert all(p.suffix == ".py" or p.parts[0] in ("finbento", "services", "monitoring")
               for p in rel)  # fmt: skip
    packages = " ".join(spec["python"]["packages"])
    assert "torch" not in packages and "transformers" not in packages
