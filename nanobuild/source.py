"""Reading service and library code with ``ast``, without importing it.

``check`` must work on a machine where the services' third-party packages are not
installed, so everything it learns about handlers and imports comes from here: the
imports of each module (made absolute), the names it refers to in other packages,
and its ``@handler`` / ``@on_startup`` / ``@on_shutdown`` functions with their
annotations rendered as comparable type text.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import msgspec

RUNTIME_PACKAGE = "nanobuild.runtime"  # the one part of nanobuild service code imports
_TYPING_ALIASES = {
    "List": "list",
    "Dict": "dict",
    "Set": "set",
    "FrozenSet": "frozenset",
    "Tuple": "tuple",
    "Type": "type",
    "NoneType": "None",
}


class Import(msgspec.Struct, frozen=True):
    """One imported module (absolute), with the names taken from it, if any."""

    module: str
    line: int
    names: tuple[str, ...] = ()
    relative: bool = False

    @property
    def top(self) -> str:
        return self.module.partition(".")[0]

    def targets(self) -> Iterator[str]:
        """Every dotted name this import binds: ``a.b`` and, for ``from a import c``, ``a.c``."""
        if not self.names:
            yield self.module
        for name in self.names:
            yield f"{self.module}.{name}" if name != "*" else self.module


class Function(msgspec.Struct, frozen=True):
    """A top-level function marked ``@handler``, ``@on_startup`` or ``@on_shutdown``."""

    name: str
    line: int
    mark: str  # "handler", "startup" or "shutdown"
    request: str | None = None  # the first parameter's annotation, resolved to a dotted name
    response: str | None = None  # the return annotation as type text (see ``type_text``)
    is_async: bool = False


class Module(msgspec.Struct, frozen=True):
    """What ``check`` needs to know of one source file."""

    name: str  # dotted module name, e.g. ``checkout.handlers``
    path: Path
    imports: tuple[Import, ...]
    references: tuple[tuple[str, int], ...]  # dotted names used, resolved through imports
    functions: tuple[Function, ...]
    classes: dict[str, int]  # top-level class name -> line
    syntax_error: tuple[int | None, str] | None = None


def package_files(package_dir: Path, package: str) -> dict[Path, str]:
    """Every file of the package in ``package_dir`` and its module's name, in a stable order."""
    files = {}
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = path.relative_to(package_dir).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[path] = ".".join((package, *parts))
    return files


def read_package(package_dir: Path, package: str) -> list[Module]:
    """Every module of the package in ``package_dir``, in a stable order."""
    return [read_module(path, name) for path, name in package_files(package_dir, package).items()]


def read_module(path: Path, name: str) -> Module:
    """Parse one file; a file that does not parse comes back with ``syntax_error`` set."""
    try:
        source = path.read_bytes()
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        return Module(name, path, (), (), (), {}, syntax_error=(exc.lineno, exc.msg))
    except (OSError, ValueError) as exc:
        return Module(name, path, (), (), (), {}, syntax_error=(None, str(exc)))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return _Reader(name, package).read(path, tree)


class _Reader:
    def __init__(self, module: str, package: str) -> None:
        self.module = module
        self.package = package
        self.symbols: dict[str, str] = {}  # local name -> dotted target
        self.imports: list[Import] = []

    def read(self, path: Path, tree: ast.Module) -> Module:
        # A single walk: walking the tree costs about half as much as parsing it.
        # Attributes are resolved after the walk, once every import is known.
        attributes = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                self.add_import(node)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                attributes.append(node)
        functions = tuple(
            function
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and (function := self.function(node)) is not None
        )
        classes = {node.name: node.lineno for node in tree.body if isinstance(node, ast.ClassDef)}
        return Module(
            name=self.module,
            path=path,
            imports=tuple(self.imports),
            references=tuple(self.references(attributes)),
            functions=functions,
            classes=classes,
        )

    def add_import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.imports.append(Import(alias.name, node.lineno))
                if alias.asname:
                    self.symbols[alias.asname] = alias.name
                else:
                    top = alias.name.partition(".")[0]
                    self.symbols[top] = top
            return
        module = self.absolute(node.module, node.level)
        names = tuple(alias.name for alias in node.names)
        self.imports.append(Import(module, node.lineno, names, relative=node.level > 0))
        for alias in node.names:
            if alias.name != "*":
                self.symbols[alias.asname or alias.name] = f"{module}.{alias.name}"

    def absolute(self, module: str | None, level: int) -> str:
        if level == 0:
            return module or ""
        base = self.package.split(".")
        base = base[: len(base) - (level - 1)] if level > 1 else base
        return ".".join([*base, module] if module else base)

    def resolve(self, node: ast.expr) -> str | None:
        """The dotted name an expression like ``kernel.GetProduct`` stands for, if any."""
        if isinstance(node, ast.Name):
            return self.symbols.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def references(self, attributes: list[ast.Attribute]) -> Iterator[tuple[str, int]]:
        """Dotted names reaching into imported modules.

        With ``import catalog.kernel as ck``, ``ck.GetProduct`` is ``catalog.kernel.GetProduct``.
        """
        imported_tops = {imp.top for imp in self.imports}
        for node in attributes:
            target = self.resolve(node)
            if target and target.partition(".")[0] in imported_tops:
                yield target, node.lineno

    def function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> Function | None:
        mark = next((m for d in node.decorator_list if (m := self.mark(d))), None)
        if mark is None:
            return None
        args = [*node.args.posonlyargs, *node.args.args]
        request = args[0].annotation if args else None
        return Function(
            name=node.name,
            line=node.lineno,
            mark=mark,
            request=self.dotted(request) if request is not None else None,
            response=self.type_text(node.returns) if node.returns is not None else None,
            is_async=isinstance(node, ast.AsyncFunctionDef),
        )

    def mark(self, decorator: ast.expr) -> str | None:
        target = self.resolve(decorator)
        if target is None or not target.startswith(RUNTIME_PACKAGE + "."):
            return None
        leaf = target.rpartition(".")[2]
        return {"handler": "handler", "on_startup": "startup", "on_shutdown": "shutdown"}.get(leaf)

    def dotted(self, node: ast.expr) -> str:
        """A class annotation (``Get``, ``kernel.Get``, ``"Get"``) as a dotted name."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text: str = node.value
            try:
                node = ast.parse(text, mode="eval").body
            except SyntaxError:
                return text
        return self.resolve(node) or ast.unparse(node)

    def type_text(self, node: ast.expr) -> str:
        """An annotation as text that ``nanobuild.probe.type_text`` also produces."""
        if isinstance(node, ast.Constant):
            if node.value is None:
                return "None"
            if node.value is Ellipsis:
                return "..."
            if isinstance(node.value, str):
                try:
                    return self.type_text(ast.parse(node.value, mode="eval").body)
                except SyntaxError:
                    return node.value
            return repr(node.value)
        if isinstance(node, ast.Name | ast.Attribute):
            target = self.resolve(node) or ast.unparse(node)
            leaf = target.rpartition(".")[2]
            return _TYPING_ALIASES.get(leaf, leaf)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return union_text([self.type_text(node.left), self.type_text(node.right)])
        if isinstance(node, ast.Subscript):
            base = self.type_text(node.value)
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            if base == "Literal":
                return f"Literal[{', '.join(ast.unparse(item) for item in items)}]"
            args = [self.type_text(item) for item in items]
            if base == "Optional":
                return union_text([*args, "None"])
            if base == "Union":
                return union_text(args)
            if base == "Annotated":
                return args[0]
            return f"{base}[{', '.join(args)}]"
        return ast.unparse(node)


def union_text(parts: list[str]) -> str:
    """Unions compare equal whatever the order they were written in."""
    flat = {item for part in parts for item in _union_members(part)}
    return " | ".join(sorted(flat))


def _union_members(text: str) -> list[str]:
    """Split ``a | list[b | c]`` at its top level only."""
    members, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth == 0 and text.startswith(" | ", i):
            members.append(text[start:i])
            start = i + 3
    members.append(text[start:])
    return members
