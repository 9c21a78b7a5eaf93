"""The package layout keeps its rules: the import contracts of pyproject.toml
([tool.importlinter], checked by import-linter's own command), no function of 60 lines or
more, no module of the package reading the environment but shared/settings.py, and the
README's settings table generated from the declarations."""

import ast
import subprocess
import sys
from pathlib import Path

from yoyo_assets.shared.settings import settings_table

from .helpers import REPO_ROOT, timeout

PACKAGE = REPO_ROOT / "yoyo_assets"


def test_import_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=timeout(120))
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_falls_outside_the_import_contracts():
    """The assets contract places each module: as a source (through its package, or a
    `package.*` pattern: a new module is covered without being named), or as a target; only
    the command line (the top layer), `__main__`, the code location and the root stand outside.
    (The layers contracts cover whole packages by themselves.)"""
    import tomllib

    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [assets] = [c for c in config["contracts"] if c["type"] == "forbidden"]
    placed = [p.removesuffix(".*") for p in (*assets["source_modules"],
                                             *assets["forbidden_modules"])]
    outside = {name for name in map(_module_name, PACKAGE.rglob("*.py"))
               if not any(name == p or name.startswith(p + ".") for p in placed)
               and not name.startswith("yoyo_assets.cli")}
    assert outside == {"yoyo_assets", "yoyo_assets.__main__", "yoyo_assets.definitions"}


def test_every_function_is_shorter_than_60_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines >= 60:
                    long.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name} "
                                f"({lines} lines)")
    assert long == []


def _reads_environment(node: ast.AST) -> bool:
    """`os.getenv(...)`, `os.environ.get(...)` or `os.environ[...]` read (not written)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        target = ast.unparse(node.func)
        return target in ("os.getenv", "os.environ.get", "os.environ.setdefault")
    return isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ" \
        and isinstance(node.ctx, ast.Load)


def test_only_settings_reads_the_environment():
    readers = [f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
               for path in PACKAGE.rglob("*.py") if path.name != "settings.py"
               for node in ast.walk(ast.parse(path.read_text())) if _reads_environment(node)]
    assert readers == []


def test_the_readme_settings_table_is_the_declarations():
    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.index("<!-- settings: python -m yoyo_assets settings -->\n")
    table = readme[start:readme.index("<!-- /settings -->")].split("\n", 1)[1].strip()
    assert table == settings_table(), "README.md: paste `python -m yoyo_assets settings`"
