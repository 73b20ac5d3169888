"""The package's rooms import one way, down the floors, and the module knows nothing of AnnData."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import scsiam

ROOT = Path(scsiam.__file__).parent
# each room may import from the rooms on its own floor or below
FLOORS = [
    {"_constants", "_utils"},
    {"data"},
    {"dataloaders"},
    {"module"},
    {"train"},
    {"model"},
    {"tl", "pp", "pl"},
    {"metrics", "datasets"},
    {"cli", "__init__"},
]
FLOOR = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}
# evaluation and shipped data sit beside the model stack: nothing in it may import them
BESIDE = {"metrics": 7, "datasets": 7}
NO_ANNDATA = {"module", "dataloaders", "train"}


def _room(path: Path) -> str:
    rel = path.relative_to(ROOT).parts
    return rel[0].removesuffix(".py") if len(rel) > 1 or rel[0] != "__init__.py" else "__init__"


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported scsiam room or top-level package, line) of every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    depth = len(path.relative_to(ROOT).parts) - 1
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                out.append((node.module or "", node.lineno))
                continue
            up = node.level - 1
            if up > depth:
                continue
            base = list(path.relative_to(ROOT).parts[: depth - up])
            target = ".".join(["scsiam", *base, *(node.module.split(".") if node.module else [])])
            if node.module is None:  # from . import x / from .. import x
                out += [(".".join([target, a.name]).rstrip("."), node.lineno) for a in node.names]
            else:
                out.append((target, node.lineno))
    return out


def _target_room(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "scsiam":
        return None
    return parts[1].removesuffix(".py") if len(parts) > 1 else "__init__"


FILES = sorted(p for p in ROOT.rglob("*.py") if "_data" not in p.parts)


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_imports_run_down_the_floors(path):
    room = _room(path)
    assert room in FLOOR, f"{room} is not placed on a floor of the import order"
    for name, line in _imports(path):
        target = _target_room(name)
        if target is None or target == room:
            continue
        assert target in FLOOR, f"{path.name}:{line} imports unknown room {name}"
        if target in BESIDE and room not in ("cli", "__init__", *BESIDE):
            pytest.fail(
                f"{path.relative_to(ROOT)}:{line} imports {name}: evaluation code is not for the model stack"
            )
        assert FLOOR[target] <= FLOOR[room], (
            f"{path.relative_to(ROOT)}:{line} imports {name} from a higher floor ({target} above {room})"
        )


@pytest.mark.parametrize("room", sorted(NO_ANNDATA))
def test_torch_rooms_know_nothing_of_anndata(room):
    for path in sorted((ROOT / room).rglob("*.py")):
        for name, line in _imports(path):
            top = name.split(".")[0]
            assert top not in ("anndata", "scanpy", "mudata", "squidpy"), f"{path.name}:{line} imports {name}"


def test_an_upward_import_is_caught(tmp_path):
    """The checker itself: a module file that imports the model is reported."""
    fake = ROOT / "module" / "_fake_for_test.py"
    try:
        fake.write_text("from ..model import SiameseCluModel\n")
        assert ("scsiam.model", 1) in _imports(fake)
        with pytest.raises(AssertionError, match="higher floor"):
            test_imports_run_down_the_floors(fake)
    finally:
        fake.unlink()
