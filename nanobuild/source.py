"""Reading service and library code with ``ast``, without importing it.

``check`` must work on a machine where the services' third-party packages are not
installed, so everything it learns about handlers and imports comes from here: the
imports of each module (made absolute), the names it refers to in other packages,
the ways it reaches code other than import statements (``Bypass``), and its
``@handler`` / ``@on_startup`` / ``@on_shutdown`` functions with their annotations
rendered as comparable type text.

A dynamic import by a literal name (``importlib.import_module("users.kernel")``,
``__import__``, ``importlib.util.find_spec``, ``runpy.run_module``,
``pkgutil.resolve_name``) is read as the import statement it stands for, so it is
judged like one.
"""

from __future__ import annotations

import ast
import errno
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

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
# Functions importing the module their argument names, and where that argument is:
# (position of the name, keyword of the name, position of the package, its keyword).
_IMPORTERS = {
    "importlib.import_module": (0, "name", 1, "package"),
    "importlib.util.find_spec": (0, "name", 1, "package"),
    "__import__": (0, "name", None, None),
    "builtins.__import__": (0, "name", None, None),
    "importlib.__import__": (0, "name", None, None),
    "runpy.run_module": (0, "mod_name", None, None),
    "pkgutil.resolve_name": (0, "name", None, None),
    "sys.modules.get": (0, None, None, None),  # a module imported already, by name
}
# What loads code from a file path, where no import rule can follow it.
_FILE_LOADERS = frozenset(
    {
        "importlib.util.spec_from_file_location",
        "importlib.machinery.SourceFileLoader",
        "importlib.machinery.SourcelessFileLoader",
        "importlib.machinery.ExtensionFileLoader",
        "runpy.run_path",
        "zipimport.zipimporter",
    }
)
# Where imports come from; changing any of them lets code import anything.
_IMPORT_PATHS = frozenset({"sys.path", "sys.meta_path", "sys.path_hooks", "sys.modules"})
_LIST_CHANGES = (
    *("append", "extend", "insert", "remove", "pop", "clear", "__setitem__", "__iadd__"),
    *("update", "setdefault", "popitem"),  # sys.modules is a dict
)
_PATH_CHANGES = frozenset(
    {"site.addsitedir", *(f"{path}.{how}" for path in _IMPORT_PATHS for how in _LIST_CHANGES)}
)
# The nodes the walk reads for imports, references and bypasses (``ast`` makes no
# subclasses of its node types, so a node's exact type says which it is).
_READ_NODES = frozenset({ast.Attribute, ast.Call, ast.Import, ast.ImportFrom, ast.Subscript})
# The last part of every call above: the walk keeps only calls ending so.
_CALL_LEAVES = frozenset(
    name.rpartition(".")[2] for name in (*_IMPORTERS, *_FILE_LOADERS, *_PATH_CHANGES)
)


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


class Bypass(msgspec.Struct, frozen=True):
    """A way a module reaches code other than an import statement ``check`` can judge."""

    kind: str  # one of the four below
    name: str
    line: int


UNSEEN = "unseen"  # a dynamic import by a name that is not a literal; name: the function
IMPORT_PATH = "import path"  # sys.path changed, or site.addsitedir; name: what is changed
FILE_LOAD = "file load"  # a module loaded from a file path; name: the function
CHAIN = "chain"  # an attribute chain from a module an import bound; name: the dotted name


class Function(msgspec.Struct, frozen=True):
    """A function marked ``@handler``, ``@on_startup`` or ``@on_shutdown``: at the top of
    its module, or a method of a top-level class (``name`` is then ``Class.method``)."""

    name: str
    line: int
    mark: str  # "handler", "startup" or "shutdown"
    request: str | None = None  # the first parameter's annotation, resolved to a dotted name
    response: str | None = None  # the return annotation as type text (see ``type_text``)
    is_async: bool = False
    # for a function only a decorator of the workspace's may mark (``@endpoint("users")``):
    # those decorators, as dotted names; it is a handler if one of them is a factory
    via: tuple[str, ...] = ()
    # where its name is bound again, later in its module (or class): what the module
    # keeps under that name is no longer this function
    rebound: int | None = None
    # a decorator of the standard library's that makes something other than a function
    # of it (``functools.lru_cache``), which the runtime cannot wire as a handler
    wrapped: str | None = None


class Module(msgspec.Struct, frozen=True):
    """What ``check`` needs to know of one source file."""

    name: str  # dotted module name, e.g. ``checkout.handlers``
    path: Path
    imports: tuple[Import, ...]
    references: tuple[tuple[str, int], ...]  # dotted names used, resolved through imports
    functions: tuple[Function, ...]
    classes: dict[str, int]  # top-level class name -> line
    syntax_error: tuple[int | None, str] | None = None
    bypasses: tuple[Bypass, ...] = ()
    calls: tuple[CallSite, ...] = ()  # constructions, and reads off ``await call(...)``
    # top-level functions that call the runtime's ``handler`` in their body: decorators
    # (or decorator factories) that register handlers, by dotted name
    factories: tuple[str, ...] = ()
    candidates: tuple[Function, ...] = ()  # functions such a decorator may mark (``via``)
    # what the runtime's ``handler`` is given that is no function it can wire: (what,
    # its name or text, line); what is ``class``, ``lambda``, ``call`` or ``empty``
    misplaced: tuple[tuple[str, str, int], ...] = ()


class Tree(NamedTuple):
    """What ``walk`` found under one folder."""

    files: list[Path]  # every regular file it may read, sorted; bytecode left out
    unreadable: list[tuple[Path, str]]  # a folder or file it cannot read (or a broken
    # link, a FIFO), and why
    outside: list[tuple[Path, Path]]  # each link that leads out of the folder, and where


_SKIPPED_DIRS = frozenset({"__pycache__"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


def walk(folder: Path, *, sealed: bool = False) -> Tree:
    """Every file under ``folder``: the one walk both ``check`` (which parses the
    ``.py`` files of it) and ``bundle`` (which packs all of it) make, so that what is
    checked is what is packed.

    Links are followed, each one leading out of ``folder`` is named in ``outside``
    (and, when ``sealed``, not followed: a package's links out are refused, and what
    they lead to is no part of it), and a link back up the tree is not walked again.
    Nothing is left out silently: what cannot be read is in ``unreadable``.
    """
    tree = Tree([], [], [])
    real = os.path.realpath(folder)
    _walk(folder, real, (real,), tree, sealed)
    tree.files.sort()
    return tree


def _walk(folder: Path, top: str, above: tuple[str, ...], tree: Tree, sealed: bool) -> None:
    """Walk ``folder`` (really ``above[-1]``) into ``tree``; ``top`` is where it began."""
    try:
        with os.scandir(folder) as found:
            entries = list(found)
    except OSError as exc:
        tree.unreadable.append((folder, exc.strerror or str(exc)))
        return
    for entry in entries:
        if not entry.name.isprintable():  # undecodable bytes (surrogates), control characters
            tree.unreadable.append((folder / escaped(entry.name), _bad_name(entry.name)))
            continue
        path = folder / entry.name
        real = os.path.join(above[-1], entry.name)
        if entry.is_symlink():  # free: the folder's listing says so
            real = os.path.realpath(path)
            if os.path.commonpath((real, top)) != top:
                tree.outside.append((path, Path(real)))
                if sealed:
                    continue
        try:
            is_dir, is_file = entry.is_dir(), entry.is_file()
        except OSError as exc:
            tree.unreadable.append((path, exc.strerror or str(exc)))
            continue
        if is_dir:
            if entry.name not in _SKIPPED_DIRS and real not in above:
                _walk(path, top, (*above, real), tree, sealed)
        elif entry.name.endswith(_SKIPPED_SUFFIXES):
            continue
        elif not is_file:
            gone = not os.path.exists(path)  # a broken link
            tree.unreadable.append(
                (path, "No such file or directory" if gone else "it is not a regular file")
            )
        elif not os.access(path, os.R_OK):
            tree.unreadable.append((path, "Permission denied"))
        else:
            tree.files.append(path)


class Static(NamedTuple):
    """What ``static_files`` found in the static folder."""

    files: list[tuple[str, Path]]  # (its path under the folder, with /, the file), sorted
    outside: list[tuple[Path, Path]]  # each link that leads out of the folder, and where
    dangling: list[Path]  # each link that leads to nothing
    unreadable: list[tuple[Path, str]]  # what cannot be read, and why


SERVED_DOT = ".well-known"  # the one folder with a leading dot that is served


def hidden(parts: Iterable[str]) -> bool:
    """Whether a path in the static folder (its parts) is left out of what is served: a
    part starting with a dot (``.env``, ``.git/``), but ``.well-known``. The runtime's
    ``static.Frontend`` keeps the same rule for requests."""
    return any(part.startswith(".") and part != SERVED_DOT for part in parts)


def static_files(folder: Path) -> Static:
    """The files of the static folder that a binary carries, and so that ``serve`` and
    the binary serve: the one rule of both (``runtime.static.Frontend`` applies it to
    each request).

    Every regular file under ``folder`` but the ``hidden`` ones; links are followed
    while they stay inside it, and one that leads out of it or to nothing is named (a
    link must not make a binary serve a file ``serve`` would not, ``nano.toml`` say),
    as is everything that cannot be read.
    """
    tree = walk(folder, sealed=True)

    def shown(path: Path) -> bool:
        return not hidden(path.relative_to(folder).parts)

    files = [(path.relative_to(folder).as_posix(), path) for path in tree.files if shown(path)]
    broken = [(p, why) for p, why in tree.unreadable if shown(p)]
    dangling = [p for p, _ in broken if os.path.islink(p) and not os.path.exists(p)]
    return Static(
        files=files,
        outside=[(link, real) for link, real in tree.outside if shown(link)],
        dangling=dangling,
        unreadable=[(p, why) for p, why in broken if p not in dangling],
    )


class NotRegular(OSError):
    """``read_regular`` was given what is not a regular file (a FIFO, a socket, a device,
    a folder): an ``OSError`` whose ``strerror`` says so, for callers that name it."""

    def __init__(self, path: Path) -> None:
        super().__init__(errno.EINVAL, "it is not a regular file", str(path))


def read_regular(path: Path) -> bytes:
    """The bytes of the regular file ``path``, never waiting on what is not one: it is
    opened without blocking (a FIFO would wait for a writer for ever) and refused with
    ``NotRegular`` unless it is a regular file. Any reader of a workspace file a user
    may have replaced (``nano.toml``, ``nano.lock``) can read it by this."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegular(path)
        return f.read()


def escaped(name: str) -> str:
    """A file name as it can be shown: its undecodable bytes and control characters as
    Python escapes (``caf\\xe9.py``, ``a\\nb``)."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _bad_name(name: str) -> str:
    """Why a name that is not printable cannot be walked: a zip's names are UTF-8 text,
    Python imports no module by any other, and a control character in a name can
    forge the lines of a message that shows it."""
    try:
        os.fsencode(name).decode("utf-8")
    except UnicodeDecodeError:
        return "its name is not UTF-8 text: rename it"
    return "its name holds a control character: rename it"


def package_files(package_dir: Path, package: str) -> dict[Path, str]:
    """Every ``.py`` file of the package in ``package_dir`` and its module's name, in a
    stable order."""
    return module_files(walk(package_dir, sealed=True), package_dir, package)


def module_files(tree: Tree, package_dir: Path, package: str) -> dict[Path, str]:
    """The ``.py`` files of ``tree``, the walk of ``package_dir``, and their modules' names."""
    files = {}
    for path in tree.files:
        if path.suffix != ".py":
            continue
        parts = path.relative_to(package_dir).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[path] = ".".join((package, *parts))
    return files


def top_modules(modules: Iterable[Module], package: str) -> set[str]:
    """The names of the top-level modules (and packages) of ``package`` among ``modules``:
    ``main`` and ``models`` of an adopted folder's ``_nanoasgi.users.main``..."""
    prefix = f"{package}."
    return {m.name[len(prefix) :].partition(".")[0] for m in modules if m.name.startswith(prefix)}


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
        self.bound: set[str] = set()  # names ``import a.b`` bound to all of package ``a``

    def read(self, path: Path, tree: ast.Module) -> Module:
        # A single walk: walking the tree costs about half as much as parsing it.
        # Attributes are resolved after the walk, once every import is known.
        attributes: list[ast.Attribute] = []
        stores: list[ast.expr] = []  # what is assigned to or deleted: ``sys.path = ...``
        importers: list[ast.Call] = []  # calls that may import or change the import path
        lookups: list[ast.Subscript] = []  # ``sys.modules["users.store"]``, maybe
        sites: list[ast.AST] = []  # what ``call_sites`` reads
        marking: list[ast.Call] = []  # ``handler(fn)`` calls: inside a factory, maybe
        for node in ast.walk(tree):
            kind = type(node)  # one look-up passes over the many nodes of no interest
            if kind in _READ_NODES:
                if isinstance(node, ast.Attribute):
                    (attributes if isinstance(node.ctx, ast.Load) else stores).append(node)
                elif isinstance(node, ast.Call):
                    leaf = _leaf(node.func)
                    if leaf in _CALL_LEAVES:
                        importers.append(node)
                    elif leaf == "handler":
                        marking.append(node)
                elif isinstance(node, ast.Import | ast.ImportFrom):
                    self.add_import(node)
                elif isinstance(node, ast.Subscript):
                    if not isinstance(node.ctx, ast.Load):
                        stores.append(node.value)
                    elif _leaf(node.value) == "modules":
                        lookups.append(node)
            if kind in SITE_NODES:
                sites.append(node)
        bypasses = [*self.importing(importers), *self.looking_up(lookups), *self.stores(stores)]
        bypasses += self.chains(attributes)
        found = [f for node, owner in _definitions(tree) if (f := self.function(node, owner))]
        if found:
            found = _rebound(tree, found)
        functions = tuple(f for f in found if not f.via)
        classes = {node.name: node.lineno for node in tree.body if isinstance(node, ast.ClassDef)}
        return Module(
            name=self.module,
            path=path,
            imports=tuple(self.imports),
            references=tuple(self.references(attributes)),
            functions=functions,
            classes=classes,
            bypasses=tuple(bypasses),
            calls=call_sites(self, tree, attributes, sites),
            factories=self.factories(tree, marking),
            candidates=tuple(f for f in found if f.via),
            misplaced=tuple(self.misplaced(tree, marking)) if marking or classes else (),
        )

    def misplaced(
        self, tree: ast.Module, marking: list[ast.Call]
    ) -> Iterator[tuple[str, str, int]]:
        """What ``handler`` marks that is no function: a class, a lambda, a name it is
        called on outside any function (no decorator: check cannot see it), nothing."""
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any(
                self.mark(d) == "handler" for d in node.decorator_list
            ):
                yield "class", node.name, node.lineno
        tops = [
            (top.lineno, top.end_lineno or top.lineno)
            for top in tree.body
            if isinstance(top, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        for call in marking:
            if self.mark(call.func) != "handler":
                continue
            if not call.args and not call.keywords:
                yield "empty", "", call.lineno
            elif call.args and isinstance(call.args[0], ast.Lambda):
                yield "lambda", "", call.lineno
            elif not any(start <= call.lineno <= end for start, end in tops):
                yield "call", ast.unparse(call)[:60], call.lineno

    def factories(self, tree: ast.Module, marking: list[ast.Call]) -> tuple[str, ...]:
        """The top-level functions holding a call of the runtime's ``handler``."""
        if not marking:
            return ()
        tops = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        names = {
            f"{self.module}.{top.name}"
            for call in marking
            if self.mark(call.func) == "handler"
            for top in tops
            if top.lineno <= call.lineno <= (top.end_lineno or top.lineno)
        }
        return tuple(sorted(names))

    def add_import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.imports.append(Import(alias.name, node.lineno))
                if alias.asname:
                    self.symbols[alias.asname] = alias.name
                    self.bound.discard(alias.asname)
                else:
                    top = alias.name.partition(".")[0]
                    self.symbols[top] = top
                    if top != alias.name:
                        self.bound.add(top)  # ``import users.kernel`` binds all of ``users``
            return
        module = self.absolute(node.module, node.level)
        names = tuple(alias.name for alias in node.names)
        self.imports.append(Import(module, node.lineno, names, relative=node.level > 0))
        for alias in node.names:
            if alias.name != "*":
                self.symbols[alias.asname or alias.name] = f"{module}.{alias.name}"
                self.bound.discard(alias.asname or alias.name)

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

    def importing(self, importers: list[ast.Call]) -> Iterator[Bypass]:
        """Dynamic imports (a literal one becomes an ``Import``), file loads, path changes."""
        for node in importers:
            how = self.resolve(node.func)
            if how in _IMPORTERS:
                found = self.dynamic_import(node, how)
                if found is None:
                    yield Bypass(UNSEEN, how, node.lineno)
                else:
                    self.imports.append(found)
            elif how in _FILE_LOADERS:
                yield Bypass(FILE_LOAD, how, node.lineno)
            elif how in _PATH_CHANGES:
                yield Bypass(IMPORT_PATH, how, node.lineno)

    def dynamic_import(self, node: ast.Call, how: str) -> Import | None:
        """The import a call of an importer makes, if its arguments say it."""
        name_at, name_key, package_at, package_key = _IMPORTERS[how]
        name = self.module_name(_argument(node, name_at, name_key))
        if not name:
            return None
        if how.endswith("__import__"):
            return self.dunder_import(node, name)
        if how == "pkgutil.resolve_name":
            module, _, names = name.partition(":")
            return Import(module, node.lineno, (names.partition(".")[0],) if names else ())
        level = len(name) - len(name.lstrip("."))
        if not level:
            return Import(name, node.lineno)
        package = _argument(node, package_at, package_key)
        own = isinstance(package, ast.Name) and package.id == "__package__"
        anchor = self.package if own else _literal(package)
        if anchor is None:
            return None
        base = anchor.split(".")
        base = base[: len(base) - (level - 1)] if level > 1 else base
        module = ".".join([*base, name[level:]] if name[level:] else base)
        return Import(module, node.lineno, relative=own)

    def dunder_import(self, node: ast.Call, name: str) -> Import | None:
        """``__import__(name, globals, locals, fromlist, level)``, with literal arguments."""
        names = _argument(node, 3, "fromlist")
        level = _argument(node, 4, "level")
        depth = level.value if isinstance(level, ast.Constant) else 0 if level is None else None
        if names is None:
            taken: list[str | None] = []
        elif isinstance(names, ast.List | ast.Tuple):
            taken = [_literal(item) for item in names.elts]
        else:
            return None
        if not isinstance(depth, int) or None in taken:
            return None
        module = self.absolute(name, depth)
        return Import(module, node.lineno, tuple(t for t in taken if t), relative=depth > 0)

    def looking_up(self, lookups: list[ast.Subscript]) -> Iterator[Bypass]:
        """``sys.modules[name]``: an import of ``name``, which is imported already."""
        for node in lookups:
            if self.resolve(node.value) != "sys.modules":
                continue
            name = self.module_name(node.slice)
            if name:
                self.imports.append(Import(name, node.lineno))
            else:
                yield Bypass(UNSEEN, "sys.modules", node.lineno)

    def module_name(self, node: ast.expr | None) -> str | None:
        """A module's name given as a literal, or as ``__name__`` or ``__package__``."""
        if isinstance(node, ast.Name) and node.id in ("__name__", "__package__"):
            return self.module if node.id == "__name__" else self.package
        return _literal(node)

    def stores(self, stores: list[ast.expr]) -> Iterator[Bypass]:
        """Assignments to (or into) ``sys.path`` and the like."""
        for node in stores:
            target = self.resolve(node)
            if target in _IMPORT_PATHS:
                yield Bypass(IMPORT_PATH, target, node.lineno)

    def chains(self, attributes: list[ast.Attribute]) -> Iterator[Bypass]:
        """Dotted names reached through a package ``import a.b`` bound, the longest at
        each line for each module reached: ``users.store.CARTS`` after
        ``import users.kernel``, whose ``users`` is the package, all of it."""
        longest: dict[tuple[int, str], str] = {}
        for node in attributes:
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in self.bound:
                target = self.resolve(node)
                if target is None:
                    continue
                key = (node.lineno, ".".join(target.split(".")[:2]))
                if len(target) > len(longest.get(key, "")):
                    longest[key] = target
        for (line, _), target in sorted(longest.items()):
            yield Bypass(CHAIN, target, line)

    def function(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef, owner: str | None = None
    ) -> Function | None:
        """The marked function ``node`` (a method of the class ``owner``), if it is one.

        One that only a decorator of the workspace's code may mark comes back with
        ``via`` naming those decorators (a call's function, for ``@endpoint("users")``).
        """
        mark = next((m for d in node.decorator_list if (m := self.mark(d))), None)
        via: tuple[str, ...] = ()
        if mark is None:
            via = tuple(v for d in node.decorator_list if (v := self.decorator(d)))
            if not via:
                return None
            mark = "handler"
        args = [*node.args.posonlyargs, *node.args.args]
        if owner is not None and args and not _is_static(node):
            args = args[1:]  # ``self``: the instance is made once, at start-up
        request = args[0].annotation if args else None
        # a single decorator is the mark itself: no wrapper to look for
        wrapped = self.wrapper(node, owner is not None) if len(node.decorator_list) > 1 else None
        return Function(
            name=node.name if owner is None else f"{owner}.{node.name}",
            line=node.lineno,
            mark=mark,
            request=self.dotted(request) if request is not None else None,
            response=self.type_text(node.returns) if node.returns is not None else None,
            is_async=isinstance(node, ast.AsyncFunctionDef),
            via=via,
            wrapped=wrapped,
        )

    def wrapper(self, node: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> str | None:
        """A decorator of ``node`` that makes no function of it (see ``_NOT_FUNCTIONS``).

        Above the mark (applied after it) a method's ``staticmethod`` or
        ``classmethod`` is fine: the instance's attribute is then a function again."""
        names = [
            self.resolve(d.func if isinstance(d, ast.Call) else d) for d in node.decorator_list
        ]
        mark = next((i for i, d in enumerate(node.decorator_list) if self.mark(d)), 0)
        for i, name in enumerate(names):
            if name in _NOT_FUNCTIONS:
                if method and i < mark and name in ("staticmethod", "classmethod"):
                    continue
                return name
        return None

    def decorator(self, node: ast.expr) -> str | None:
        """The dotted name of a decorator that may be a factory of handlers, if any."""
        target = self.resolve(node.func if isinstance(node, ast.Call) else node)
        if target is None or target.startswith(RUNTIME_PACKAGE + "."):
            return None
        return target if "." in target else f"{self.module}.{target}"  # defined here

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


def _definitions(
    tree: ast.Module,
) -> Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef, str | None]]:
    """Every top-level function (owner None) and every method of a top-level class."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node, None
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield item, node.name


# Decorators of the standard library's that make something other than a plain function
# (a cache wrapper, a descriptor): the runtime cannot read a handler's parameters off it.
_NOT_FUNCTIONS = frozenset(
    {
        *(f"functools.{name}" for name in ("cache", "lru_cache", "cached_property")),
        *(f"functools.{name}" for name in ("partial", "partialmethod", "singledispatch")),
        *("property", "classmethod", "staticmethod", "functools.singledispatchmethod"),
    }
)


def _rebound(tree: ast.Module, found: list[Function]) -> list[Function]:
    """``found`` with ``rebound`` set where a later statement of the same body (the
    module's, or the class's for a method) binds the function's name again."""
    owners = {fn.name.rpartition(".")[0] for fn in found}
    bodies = {"": tree.body} | {
        node.name: node.body
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name in owners
    }
    bound: dict[tuple[str, str], list[int]] = {}  # (owner, name) -> the lines binding it
    for owner, body in bodies.items():
        for statement in body:
            for name, line in _statement_names(statement):
                bound.setdefault((owner, name), []).append(line)
    marked = []
    for fn in found:
        owner, _, name = fn.name.rpartition(".")
        again = next((line for line in bound.get((owner, name), ()) if line > fn.line), None)
        marked.append(fn if again is None else msgspec.structs.replace(fn, rebound=again))
    return marked


def _statement_names(node: ast.stmt) -> Iterator[tuple[str, int]]:
    """The names a statement of a module's (or a class's) body binds there."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        yield node.name, node.lineno
    elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            for name, (line, _) in _target_names(target):
                yield name, line
    elif isinstance(node, ast.Import | ast.ImportFrom):
        for alias in node.names:
            yield (alias.asname or alias.name.partition(".")[0]), node.lineno


def _is_static(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(_leaf(d) == "staticmethod" for d in node.decorator_list)


def marked(
    modules: Iterable[Module], shared: Iterable[Module] = ()
) -> Iterator[tuple[Module, Function]]:
    """Every marked function of ``modules``, with its module, in order.

    That is what ``@handler``, ``@on_startup`` and ``@on_shutdown`` mark, and every
    function a decorator of ``modules`` or ``shared`` (the libraries they use) marks:
    a top-level function that calls ``handler`` (``def endpoint(name): ... return
    handler(fn)``), used as ``@endpoint("users")`` or ``@endpoint``. A factory
    re-exported by its package (``from webkit import endpoint``) counts too.
    """
    modules = list(modules)
    factories = {f for m in (*modules, *shared) for f in m.factories}
    by_package = {(f.partition(".")[0], f.rpartition(".")[2]) for f in factories}
    for module in modules:
        for fn in module.functions:
            yield module, fn
        for fn in module.candidates:
            if any(
                v in factories or (v.partition(".")[0], v.rpartition(".")[2]) in by_package
                for v in fn.via
            ):
                yield module, fn


def _leaf(func: ast.expr) -> str | None:
    """The last name of what a call calls: ``import_module`` of ``importlib.import_module``."""
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def _argument(node: ast.Call, position: int | None, keyword: str | None) -> ast.expr | None:
    """The argument of a call at ``position``, or given as ``keyword``."""
    if position is not None and position < len(node.args):
        arg = node.args[position]
        return None if isinstance(arg, ast.Starred) else arg
    return next((k.value for k in node.keywords if k.arg == keyword and keyword), None)


def _literal(node: ast.expr | None) -> str | None:
    """The text of a string literal; ``None`` for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def union_text(parts: list[str]) -> str:
    """Unions compare equal whatever the order they were written in."""
    flat = {item for part in parts for item in union_members(part)}
    return " | ".join(sorted(flat))


def union_members(text: str) -> list[str]:
    """Split ``a | list[b | c]`` at its top level only."""
    members, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth == 0 and text.startswith(" | ", i):
            members.append(text[start:i])
            start = i + 3
    members.append(text[start:])
    return members


# -- call sites: constructions of classes, and what is read off ``await call(...)``

_CALL_FUNCTIONS = frozenset({f"{RUNTIME_PACKAGE}.call", f"{RUNTIME_PACKAGE}.router.call"})
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
# What binds names by a target (``x = ...``, ``for x in``, ``with ... as x``, ``del x``).
_TARGETED = (
    ast.Assign,
    ast.AugAssign,
    ast.AnnAssign,
    ast.NamedExpr,
    ast.For,
    ast.AsyncFor,
    ast.withitem,
    ast.comprehension,
    ast.Delete,
)
# What binds a name by itself.
_NAMING = (
    ast.arg,
    ast.ClassDef,
    ast.ExceptHandler,
    ast.Global,
    ast.Nonlocal,
    ast.MatchAs,
    ast.MatchStar,
    ast.MatchMapping,
)
# The nodes ``call_sites`` reads, gathered by ``_Reader.read``'s one walk: the calls;
# what binds a name, to know that a name holds one call's result in all its function;
# the functions, its scopes. (Not every ``Name``: they are most of a tree.) A set of
# types: one look-up a node, where ``isinstance`` would try each type in turn.
SITE_NODES = frozenset({ast.Call, *_TARGETED, *_FUNCTIONS, *_NAMING})
_NO_KERNELS = frozenset({*sys.stdlib_module_names, RUNTIME_PACKAGE.partition(".")[0]})
_LITERALS = {bool: "bool", int: "int", float: "float", str: "str", bytes: "bytes"}

Position = tuple[int, int]  # (line, column)
Scope = tuple[Position, Position]  # where a function begins and ends


class Argument(msgspec.Struct, frozen=True, omit_defaults=True):
    """One argument of a call site: by keyword (``name``) or, without one, by position."""

    line: int
    name: str | None = None
    literal: str | None = None  # a literal's kind: int float bool str bytes None list dict


class CallSite(msgspec.Struct, frozen=True, omit_defaults=True):
    """A call of a name an import bound, or of a class of this module: ``GetUser(id=...)``.

    ``nanobuild.checks.calls`` proves the calls of Structs against their classes.
    """

    target: str  # dotted, resolved through imports: ``users.kernel.GetUser``
    line: int
    arguments: tuple[Argument, ...] = ()
    star: bool = False  # it has ``*args``: which fields come by position is unknown
    spread: bool = False  # it has ``**kwargs``: which fields come by keyword is unknown
    # attributes read off the result of ``await call(this)``, directly or through a
    # name that holds nothing else in its function
    reads: tuple[tuple[str, int], ...] = ()


def call_sites(
    reader: _Reader, tree: ast.Module, attributes: list[ast.Attribute], nodes: list[ast.AST]
) -> tuple[CallSite, ...]:
    """The call sites among ``nodes`` (see ``SITE_NODES``), once every import is known."""
    local = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    tops = {imp.top for imp in reader.imports}
    targets: dict[int, tuple[ast.Call, str]] = {}  # id of the call -> (it, what it calls)
    others: list[ast.AST] = []
    for node in nodes:
        if type(node) is not ast.Call:
            others.append(node)
        elif target := _target(reader, node, local, tops):
            targets[id(node)] = (node, target)
    if not targets:
        return ()
    reads = _reads(reader, attributes, others)
    return tuple(_site(node, target, reads.get(key, [])) for key, (node, target) in targets.items())


def _target(reader: _Reader, node: ast.Call, local: set[str], tops: set[str]) -> str | None:
    """What a call calls, as a dotted name, if an import or this module's classes name it
    (and it is not the standard library's or nanobuild's, which define no kernel)."""
    if isinstance(node.func, ast.Name) and node.func.id not in reader.symbols:
        return f"{reader.module}.{node.func.id}" if node.func.id in local else None
    target = reader.resolve(node.func)
    if not target:
        return None
    top = target.partition(".")[0]
    return target if top in tops and top not in _NO_KERNELS else None


def _site(node: ast.Call, target: str, reads: list[tuple[str, int]]) -> CallSite:
    arguments = [
        Argument(arg.lineno, literal=_literal_kind(arg))
        for arg in node.args
        if not isinstance(arg, ast.Starred)
    ]
    arguments += [
        Argument(kw.lineno, kw.arg, _literal_kind(kw.value)) for kw in node.keywords if kw.arg
    ]
    return CallSite(
        target,
        node.lineno,
        tuple(arguments),
        star=any(isinstance(arg, ast.Starred) for arg in node.args),
        spread=any(kw.arg is None for kw in node.keywords),
        reads=tuple(reads),
    )


def _literal_kind(node: ast.expr) -> str | None:
    """The type of a literal argument, where the literal alone says it; else None."""
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub | ast.UAdd)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) in (int, float)
    ):
        node = node.operand
    if isinstance(node, ast.Constant):
        return "None" if node.value is None else _LITERALS.get(type(node.value))
    if isinstance(node, ast.JoinedStr):
        return "str"
    if isinstance(node, ast.List | ast.ListComp):
        return "list"
    if isinstance(node, ast.Dict | ast.DictComp):
        return "dict"
    return None


def _request(reader: _Reader, node: ast.expr | None) -> ast.Call | None:
    """The request ``X(...)`` of an ``await call(X(...))``."""
    if not isinstance(node, ast.Await) or not isinstance(node.value, ast.Call):
        return None
    called = node.value
    if not called.args or reader.resolve(called.func) not in _CALL_FUNCTIONS:
        return None
    return called.args[0] if isinstance(called.args[0], ast.Call) else None


def _reads(
    reader: _Reader, attributes: list[ast.Attribute], nodes: list[ast.AST]
) -> dict[int, list[tuple[str, int]]]:
    """Per request (by id), the attributes read off its ``await call(...)``'s result.

    A name counts only where its function binds it once, by that assignment: no
    other assignment, parameter, loop, ``global`` or nested rebinding could make it
    hold anything else. (Scopes are told by position, as the one walk leaves no parents.)
    """
    found: dict[int, list[tuple[str, int]]] = {}
    for attr in attributes:
        if (made := _request(reader, attr.value)) is not None:
            found.setdefault(id(made), []).append((attr.attr, attr.lineno))
    held: dict[str, list[tuple[Position, int]]] = {}  # name -> (where bound, request id)
    for node in nodes:
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.NamedExpr):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            single = not isinstance(node, ast.Assign) or len(node.targets) == 1
            made = _request(reader, node.value)
            if made is not None and single and isinstance(target, ast.Name):
                held.setdefault(target.id, []).append((_start(target), id(made)))
    if not held:
        return found
    bindings: dict[str, list[Position]] = {}
    for node in nodes:
        for name, at in _bound(node):
            if name in held:
                bindings.setdefault(name, []).append(at)
    uses: dict[str, list[ast.Attribute]] = {}
    for attr in attributes:
        if isinstance(attr.value, ast.Name) and attr.value.id in held:
            uses.setdefault(attr.value.id, []).append(attr)
    scopes = [(_start(n), _end(n)) for n in nodes if isinstance(n, _FUNCTIONS)]
    for name, assignments in held.items():
        for at, request in assignments:
            scope = _innermost(scopes, at)
            if scope is None or sum(_within(p, scope) for p in bindings[name]) != 1:
                continue
            for attr in uses.get(name, []):
                if _within(_start(attr), scope):
                    found.setdefault(request, []).append((attr.attr, attr.lineno))
    return found


def _bound(node: ast.AST) -> Iterator[tuple[str, Position]]:
    """The names ``node`` binds in its scope (or declares not its own), and where."""
    if isinstance(node, _TARGETED):
        if isinstance(node, ast.Assign | ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.withitem):
            targets = [node.optional_vars] if node.optional_vars else []
        else:
            targets = [node.target]
        for target in targets:
            yield from _target_names(target)
    elif isinstance(node, ast.arg):
        yield node.arg, _start(node)
    elif isinstance(node, ast.Global | ast.Nonlocal):
        yield from ((name, _start(node)) for name in node.names)
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        yield node.name, _start(node)
    elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar):
        if node.name:
            yield node.name, _start(node)
    elif isinstance(node, ast.MatchMapping) and node.rest:
        yield node.rest, _start(node)


def _target_names(target: ast.expr) -> Iterator[tuple[str, Position]]:
    """The names an assignment target binds: ``a``, ``(a, *b)``; not ``a.b`` or ``a[0]``."""
    if isinstance(target, ast.Name):
        yield target.id, _start(target)
    elif isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _target_names(element)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


def _start(node: ast.AST) -> Position:
    return (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))


def _end(node: ast.AST) -> Position:
    return (getattr(node, "end_lineno", 0) or 0, getattr(node, "end_col_offset", 0) or 0)


def _within(at: Position, scope: Scope) -> bool:
    return scope[0] <= at <= scope[1]


def _innermost(scopes: list[Scope], at: Position) -> Scope | None:
    """The function that begins last among those around ``at``: the innermost."""
    around = [scope for scope in scopes if _within(at, scope)]
    return max(around) if around else None
