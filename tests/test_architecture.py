"""The module structure: no import cycle, a library without absl flags, no unexplained function-level import,
no module over 400 lines and no function over 60.

The import graph is read from the source (every import statement, at any depth), not from what a
run happens to import, so an import hidden in a function counts too.
"""

import ast

from tests.conftest import REPO_ROOT

PACKAGES = ("progan_tf", "datasets")
# Only these modules may know about absl flags: main.py's flag definitions and the per-mode
# translation of flags into library calls.
FLAG_MODULES = ("progan_tf.flags", "progan_tf.cli")


def module_name(path):
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules():
    """{module name: path} of every module of our packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def import_statements(path, package):
    """(node, imported names, inside a function) for every import statement of a file.

    `package` is the package relative imports start from. An imported name is a dotted path:
    `from a.b import c` gives "a.b.c" (the module a.b.c if it exists, else the attribute c of a.b).
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function.update(id(inner) for inner in ast.walk(node) if inner is not node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        yield node, names, id(node) in in_function


def package_of(path):
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def resolve(name, known):
    """The module of ours that importing `name` executes last (None for other packages)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_graph():
    known = modules()
    graph = {name: set() for name in known}
    for name, path in known.items():
        for _, imported, _ in import_statements(path, package_of(path)):
            for target in imported:
                module = resolve(target, known)
                # Importing a.b.c runs a/__init__ and a/b/__init__ too; a package's own
                # modules importing it (its __init__ importing them back) is the usual layout.
                while module and not name.startswith(module + ".") and module != name:
                    graph[name].add(module)
                    module = module.rpartition(".")[0] or None
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for successor in sorted(graph[node]):
            if state.get(successor) == "open":
                return stack[stack.index(successor) :] + [successor]
            if successor not in state:
                cycle = visit(successor)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def is_library(name):
    return name.startswith("progan_tf") and not any(name == m or name.startswith(m + ".") for m in FLAG_MODULES)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    graph = import_graph()
    # periodic imports generators at the top; generators imports runs; runs imports config.
    assert {"progan_tf.generators", "progan_tf.metrics.sources"} <= graph["progan_tf.metrics.periodic"]
    assert "progan_tf.runs" in graph["progan_tf.generators"]
    assert "progan_tf.config" in graph["progan_tf.runs"]
    source = tmp_path / "sample.py"
    source.write_text(
        "import os\ntry:\n    import json\nexcept ImportError:\n    pass\n\n\n"
        "def f():\n    from .. import sibling\n    import absl.flags\n"
    )
    found = sorted((names, in_function) for _, names, in_function in import_statements(source, "pkg.sub"))
    assert found == [(["absl.flags"], True), (["json"], False), (["os"], False), (["pkg.sibling"], True)]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_library_module_imports_absl_flags_or_the_cli():
    offenders = []
    for name, path in modules().items():
        if not is_library(name):
            continue
        for node, imported, _ in import_statements(path, package_of(path)):
            for target in imported:
                if target == "absl.flags" or target.startswith("absl.flags."):
                    offenders.append(f"{name}:{node.lineno} imports {target}")
                if any(target == m or target.startswith(m + ".") for m in FLAG_MODULES):
                    offenders.append(f"{name}:{node.lineno} imports {target}")
    assert not offenders, offenders


def test_function_level_imports_say_why():
    """An import inside a function is allowed only under a comment that says why (a heavy or
    optional dependency); everything else is imported at the top of the module."""
    offenders = []
    for name, path in modules().items():
        if not name.startswith("progan_tf"):
            continue  # datasets/: its builder's process-pool imports are being reworked (issue #10)
        lines = path.read_text().splitlines()
        for node, _, in_function in import_statements(path, package_of(path)):
            if not in_function:
                continue
            above = node.lineno - 2
            while above >= 0 and lines[above].strip().startswith(("from ", "import ")):
                above -= 1
            if above < 0 or not lines[above].strip().startswith("#"):
                offenders.append(f"{name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not offenders, offenders


# Issue #10's sizes: a module a newcomer can read, a function that fits on a screen.
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # not counting the docstring


def function_lengths(path):
    """{qualified-ish name: lines of code} of every function of a file, docstrings not counted."""
    lengths = {}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            docstring = node.body[0]
            if isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant):
                if isinstance(docstring.value.value, str):
                    lines -= docstring.end_lineno - docstring.lineno + 1
            lengths[f"{path.name}:{node.lineno} {node.name}"] = lines
    return lengths


def test_function_lengths_count_code_not_docstrings(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text('def f():\n    """One.\n\n    Two.\n    """\n    a = 1\n    return a\n\n\ndef g():\n    pass\n')
    assert function_lengths(source) == {"sample.py:1 f": 3, "sample.py:10 g": 2}


def test_no_long_modules_or_functions():
    too_long = {}
    for name, path in modules().items():
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            too_long[name] = lines
        too_long.update({key: n for key, n in function_lengths(path).items() if n > MAX_FUNCTION_LINES})
    assert not too_long, f"over {MAX_MODULE_LINES} lines per module / {MAX_FUNCTION_LINES} per function: {too_long}"
