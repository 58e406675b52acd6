"""What the checks share: the workspace, its code read once, and its kernels probed once."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from nanobuild import probe
from nanobuild.checks.asgi import own_imports
from nanobuild.diagnostics import Diagnostic
from nanobuild.probe import KernelInfo
from nanobuild.source import Module, Tree, module_files, read_module, walk
from nanobuild.workspace import Library, Service, Workspace


@dataclass
class Context:
    workspace: Workspace
    modules: dict[str, list[Module]]  # service or library name -> its package's modules
    # Each probed kernel's contracts, from one child process for all of them. Only
    # kernels that parse and keep to the kernel import rules are imported: the others
    # are reported already, and importing them could fail for a reason that says less.
    kernels: dict[str, KernelInfo] = field(default_factory=dict)
    # Per service or library with a package folder, the walk of it: the files ``bundle``
    # packs, of which the ``.py`` files are ``modules`` (E113 and E114 come from it).
    trees: dict[str, Tree] = field(default_factory=dict)

    @classmethod
    def read(cls, workspace: Workspace) -> Context:
        """Parse the workspace's code, and import its kernels in a child process.

        The child takes about as long as the parsing, so the two overlap: the child
        starts first, the kernels are parsed, which is all it takes to choose the
        kernels to import, and the rest is parsed while the child imports them.
        """
        running = probe.start()  # it loads msgspec and the runtime meanwhile
        owners: list[Service | Library] = [*workspace.services.values()]
        owners += workspace.libraries.values()
        trees = {o.name: walk(o.package_dir, sealed=True) for o in owners if o.package_dir.is_dir()}
        files = {
            owner.name: module_files(trees[owner.name], owner.package_dir, owner.package)
            if owner.name in trees
            else {}
            for owner in owners
        }
        # The kernels first: they are all that ``kernel`` and ``kernel_import_problems``
        # need to choose the kernels to import, so the context can hold them alone.
        parsed = {
            path: read_module(path, name)
            for svc in workspace.services.values()
            for path, name in files[svc.name].items()
            if name == svc.kernel_module
        }
        context = cls(workspace, _modules(files, parsed), trees=trees)
        running.send(workspace.package_folders(), context._kernels_to_probe())
        # Then the rest, while the child imports the kernels.
        for found in files.values():
            for path, name in found.items():
                if path not in parsed:
                    parsed[path] = read_module(path, name)
        context.modules = own_imports(workspace, _modules(files, parsed))
        context.kernels = running.report()
        return context

    def _kernels_to_probe(self) -> dict[str, str]:
        """Service name -> kernel module, for each kernel the child should import."""
        return {
            name: svc.kernel_module
            for name, svc in self.workspace.services.items()
            if self.kernel(svc) is not None and not self.kernel_import_problems[name]
        }

    @cached_property
    def package_owner(self) -> dict[str, Service | Library]:
        """Which service or library each top-level package name belongs to."""
        owners: dict[str, Service | Library] = {}
        for lib in self.workspace.libraries.values():
            owners.setdefault(lib.package, lib)
        for svc in self.workspace.services.values():
            owners.setdefault(svc.package, svc)
        return owners

    def kernel(self, service: Service) -> Module | None:
        """The parsed kernel of ``service``, if it has one that parses."""
        if service.adopted:
            return None  # an adopted app's modules are all its own: none is a kernel
        for module in self.modules.get(service.name, []):
            if module.name == service.kernel_module and module.syntax_error is None:
                return module
        return None

    @cached_property
    def kernel_import_problems(self) -> dict[str, list[Diagnostic]]:
        """Per service, the imports its kernel may not make (E207)."""
        from nanobuild.checks.imports import kernel_import_problems

        return {
            name: kernel_import_problems(self, svc) for name, svc in self.workspace.services.items()
        }

    def rel(self, path: Path) -> str:
        return self.workspace.rel(path)


def _modules(
    files: dict[str, dict[Path, str]], parsed: dict[Path, Module]
) -> dict[str, list[Module]]:
    """Per service or library, those of its modules that are ``parsed``, in file order."""
    return {
        owner: [parsed[path] for path in found if path in parsed] for owner, found in files.items()
    }
