"""The package's layering, read from its source: no import cycles, head types imported only where they register,
argument parsing and printing only in the CLI, and the 0.1 flat import paths still working."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

import logitmlp_hf
from logitmlp_hf._compat import MOVED_MODULES


PACKAGE = Path(logitmlp_hf.__file__).parent
HEAD_TYPES = (
    "logitmlp_hf.heads.logitmlp",
    "logitmlp_hf.heads.autodeco",
    "logitmlp_hf.heads.decoding_adapter",
    "logitmlp_hf.heads.sequence_adapter",
)
# Who may import a specific head type: the facade re-exports the public classes, heads/__init__ registers the
# built-in types, and the sequence adapter's fitting procedure (trainer/) builds that head.
MAY_IMPORT_HEAD_TYPES = {
    "logitmlp_hf": HEAD_TYPES,
    "logitmlp_hf.heads": HEAD_TYPES,
    "logitmlp_hf.trainer.sequence_adapter": ("logitmlp_hf.heads.sequence_adapter",),
    # the controlled task compares trained heads with the best warp of the LogitMLP family itself
    "logitmlp_hf.reproduce.branching": ("logitmlp_hf.heads.logitmlp",),
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, top_level_only: bool) -> set[str]:
    """Package modules ``name`` imports (``top_level_only``: at import time, outside ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("logitmlp_hf"):
                found.add(module)
                found.update(f"{module}.{a.name}" for a in node.names)  # `from . import autodeco`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("logitmlp_hf"))
    return found


def test_no_import_cycles_at_import_time():
    modules = _modules()
    graph = {
        name: {m for m in _imports(name, path, top_level_only=True) if m in modules and m != name}
        for name, path in modules.items()
    }
    # A package's own __init__ importing its submodules is how packages work, not a cycle between concerns.
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle.extend(stack[stack.index(nxt) :] + [node, nxt] if nxt in stack else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, stack + [node]):
                return True
        state[node] = 2
        return False

    for start in sorted(graph):
        if state.get(start) is None and visit(start, []):
            break
    assert not cycle, f"import cycle: {' -> '.join(cycle)}"


def test_head_types_are_imported_only_where_they_register():
    offenders = []
    for name, path in _modules().items():
        own = next((t for t in HEAD_TYPES if name == t or name.startswith(t + ".")), None)
        allowed = MAY_IMPORT_HEAD_TYPES.get(name, ())
        for module in _imports(name, path, top_level_only=False):
            for head_type in HEAD_TYPES:
                hit = module == head_type or module.startswith(head_type + ".")
                if hit and head_type != own and head_type not in allowed:
                    offenders.append(f"{name} imports {module}")
    assert not offenders, offenders


def test_only_the_cli_parses_arguments_or_prints():
    offenders = []
    for name, path in _modules().items():
        if name.startswith("logitmlp_hf.cli"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
                offenders.append(f"{name}: imports argparse")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                # PEFT's print_trainable_parameters prints by contract
                inside = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and node in ast.walk(f)]
                if not any(f.name == "print_trainable_parameters" for f in inside):
                    offenders.append(f"{name}:{node.lineno}: print()")
    assert not offenders, offenders


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_flat_module_paths_of_0_1_still_import(old):
    new = importlib.import_module(f"logitmlp_hf.{MOVED_MODULES[old]}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(f"logitmlp_hf.{old}")
    assert module is new


@pytest.mark.parametrize(
    "package, names",
    [
        ("logitmlp_hf.evaluation", ["evaluate", "load_eval_dataset", "DecodingPolicy", "parse_policy", "EvalResults"]),
        ("logitmlp_hf.analysis", ["analyze_rollouts", "load_rollouts", "generate_arithmetic_rollouts"]),
        ("logitmlp_hf.reproduce", ["ReproduceConfig", "reproduce"]),
    ],
)
def test_modules_that_became_packages_keep_their_main_names(package, names):
    module = importlib.import_module(package)
    assert all(hasattr(module, name) for name in names)


def test_cli_reports_bad_input_as_a_message_with_exit_status_2(tmp_path, capsys):
    from logitmlp_hf.cli import main

    rollouts = tmp_path / "rollouts.jsonl"
    rollouts.write_text("")  # an empty rollouts file is refused before any model is loaded
    status = main(["analyze", "--rollouts", str(rollouts), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("logitmlp analyze: error: ") and "Traceback" not in err
    assert str(rollouts) in err


def test_pyproject_lists_every_subpackage():
    # a package missing from the list is left out of a built wheel (an editable install would not notice)
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(PACKAGE.parent).parts) for p in PACKAGE.rglob("__init__.py")} | {
        "logitmlp_hf.model_cards"
    }
    assert listed == on_disk
