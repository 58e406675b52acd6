"""What the checks share: the workspace, its code read once, and its kernels probed once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from nanobuild.checks.probe import KernelInfo, probe
from nanobuild.diagnostics import Diagnostic
from nanobuild.source import Module, read_package
from nanobuild.workspace import Library, Service, Workspace


@dataclass
class Context:
    workspace: Workspace
    modules: dict[str, list[Module]]  # service or library name -> its package's modules

    @classmethod
    def read(cls, workspace: Workspace) -> Context:
        owners: list[Service | Library] = [*workspace.services.values()]
        owners += workspace.libraries.values()
        modules = {
            owner.name: read_package(owner.package_dir, owner.package)
            if owner.package_dir.is_dir()
            else []
            for owner in owners
        }
        return cls(workspace, modules)

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

    @cached_property
    def kernels(self) -> dict[str, KernelInfo]:
        """Each kernel's contracts, from one child process for all of them.

        Only kernels that parse and keep to the kernel import rules are imported:
        the others are reported already, and importing them could fail for a reason
        that says less.
        """
        wanted = {
            name: svc.kernel_module
            for name, svc in self.workspace.services.items()
            if self.kernel(svc) is not None and not self.kernel_import_problems[name]
        }
        return probe(self.workspace.import_paths(), wanted)

    def rel(self, path: Path) -> str:
        return self.workspace.rel(path)
