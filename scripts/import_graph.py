"""Print the package's imports between layers as a Mermaid flowchart (docs/architecture.md).

    .venv/bin/python scripts/import_graph.py > /tmp/graph.md

Modules are grouped: per domain its definitions, jobs, sensors, assets, checks (the adapters'
asset checks) and the rest (domain logic and resources); shared/; the command line. The graph is
import-linter's (grimp), the same one `lint-imports` checks the contracts on.
"""

import grimp

LAYERS = ("definitions", "jobs", "sensors", "assets", "checks")


def layer(module: str) -> str | None:
    """The drawing's box for `module`, or None for package roots."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    if parts[1] in ("datagraph", "adapters"):
        if len(parts) == 2:
            return None
        # datagraph/checks.py is the quality check's logic, measured inside the asset;
        # datagraph/extraction_asset.py is one asset's ops, an asset module.
        name = "assets" if parts[2].endswith("_asset") else parts[2]
        own = name in LAYERS and (parts[1], name) != ("datagraph", "checks")
        return f"{parts[1]}.{name if own else 'logic_and_resources'}"
    return {"__main__": "cli"}.get(parts[1], parts[1])


def main() -> None:
    graph = grimp.build_graph("yoyo_assets")
    edges = {(layer(m), layer(i)) for m in graph.modules
             for i in graph.find_modules_directly_imported_by(m)}
    print("```mermaid\nflowchart TD")
    for source, target in sorted(e for e in edges if None not in e and e[0] != e[1]):
        print(f"    {source.replace('.', '_')}[{source}] --> {target.replace('.', '_')}[{target}]")
    print("```")


if __name__ == "__main__":
    main()
