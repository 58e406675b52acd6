"""Every diagnostic code the build side reports, each with its title.

A code names one kind of problem and never changes meaning, so that users, CI
scripts and the README's table (under "``nanobuild check``") can rely on it. Build-side
modules take their codes from here, never as bare strings: a ``Diagnostic`` refuses
a code that is not listed (``nanobuild.diagnostics``), and ``tests/test_codes.py``
holds this list, the README's table and the tests that produce each code in step.

The runtime has no diagnostic codes and never imports this module: a binary ships
without the build side.

    E0xx  nano.toml and the command line
    E1xx  packages, the dependency graph, who imports whom
    E2xx  contracts, kernels and handlers
    E3xx  can the services share one process
    E4xx  packing the binary (``bundle``)
    E5xx  the lock: ``nano.lock`` and ``nanobuild lock``
    E6xx  contract versions: ``check --against`` an older build
    W1xx  warnings: what ``check`` cannot see, reported without failing it
"""

from __future__ import annotations

from typing import NewType

Code = NewType("Code", str)

TITLES: dict[Code, str] = {}  # code -> the problem it names, as the README's table says


def _code(code: str, title: str) -> Code:
    # a code defined twice would give one code two meanings
    assert code not in TITLES, f"{code} is defined twice"
    TITLES[Code(code)] = title
    return Code(code)


E000 = _code("E000", "no workspace found")
E001 = _code("E001", "`nano.toml` unreadable or not TOML")
E002 = _code("E002", "unknown key")
E003 = _code("E003", "wrong value type, or missing key")
E004 = _code("E004", "a path that does not exist")
E005 = _code("E005", "a path that leaves the workspace")
E006 = _code("E006", "a name that is not an identifier")
E007 = _code("E007", "a requirement that is not PEP 508")
E008 = _code("E008", "`bundle --only` names an unknown service")
E009 = _code("E009", "`new` cannot create the service")
E010 = _code("E010", "a service and a library with one name")
E011 = _code(
    "E011", "an `asgi` key that cannot be used (`asgi`, or `port`/`mount`/`urls` without it)"
)
E012 = _code("E012", "an ASGI service's `port` or `mount` that cannot be used")
E013 = _code("E013", "two services served on one port or under one mount")
E014 = _code("E014", "a `urls` entry naming a service that is not a dependency")
E015 = _code("E015", "a `urls` variable that is not an environment variable name")
E016 = _code("E016", "an unknown error kind in an exception map (`services.<name>.errors`)")
E017 = _code("E017", "an exception class in an exception map that is not `module.Class`")
E020 = _code("E020", "`init` cannot write the workspace")
E021 = _code("E021", "`new --library` cannot create the library")
E022 = _code("E022", "a `--package` that cannot be used")
E023 = _code("E023", "a host that is neither an IP address nor a host name")
E024 = _code("E024", "a requirement naming a URL, which `nano.lock` cannot pin")
E036 = _code("E036", "a placement group naming a service that is not in the workspace")
E037 = _code("E037", "a service placed in two groups")
E038 = _code("E038", "a group's `replicas` below 1, or an `internal_port` that is not a TCP port")
E039 = _code("E039", "a placement group name that is not a DNS label")
E040 = _code("E040", "a group's `resources` that cannot be used")
E041 = _code("E041", "a discovery pattern that cannot be used (`deploy.discovery`)")
E042 = _code("E042", "a placement group with no services, or named like a service's own group")
E043 = _code("E043", "placement groups that call each other in a cycle")
E044 = _code("E044", "`deploy.front` naming no placement group, or one other groups call")
E045 = _code("E045", "`deploy` cannot write its output")

E101 = _code("E101", "dependency on a service not in the workspace")
E102 = _code("E102", "dependency cycle")
E103 = _code("E103", "import of a service not declared in `depends`")
E104 = _code("E104", "import of another service's internals")
E105 = _code("E105", "import of a library not declared in `libraries`")
E106 = _code("E106", "a library importing a service")
E107 = _code("E107", "`libraries` names an unknown library")
E108 = _code("E108", "a service without its package or kernel")
E109 = _code("E109", "a source file that does not parse")
E110 = _code("E110", "service code importing nanobuild's build side")
E111 = _code("E111", "code changing where imports come from (`sys.path`, `site.addsitedir`)")
E112 = _code("E112", "code loading a module from a file path")
E113 = _code("E113", "a link in a package that leads out of it")
E114 = _code("E114", "a file or folder in a package that cannot be read")
E120 = _code("E120", "an import of a third-party package its owner does not declare")
E121 = _code("E121", "third-party imports that cannot be checked: no staged packages")
E122 = _code("E122", "a `NANO_KERNEL_TIMEOUT` that is not a number of seconds")
E130 = _code("E130", "an `asgi` target whose module is not in the service's folder")
E131 = _code("E131", "an `asgi` target whose module does not define the app")

E201 = _code("E201", "a name the dependency's kernel does not define")
E202 = _code("E202", "a contract with no handler")
E203 = _code("E203", "a contract with two handlers")
E204 = _code("E204", "handler annotations that do not match the contract")
E205 = _code("E205", "a `public` name that is not a contract")
E206 = _code("E206", "a contract that cannot cross the network")
E207 = _code("E207", "a kernel importing what a kernel may not")
E208 = _code("E208", "a kernel that fails to import")
E209 = _code("E209", "a handler for a contract that is not its service's")
E210 = _code("E210", "a contract without a response type")
E211 = _code("E211", "the child process importing the kernels dies, hangs or garbles its report")
E212 = _code("E212", "a call giving a field its class does not have")
E213 = _code("E213", "a call leaving out a required field")
E214 = _code("E214", "a call with more positional arguments than its class takes")
E215 = _code("E215", "a literal of the wrong type for its field")
E216 = _code("E216", "an attribute the call's response type does not have")
E217 = _code("E217", "a field given both by position and by keyword")
E218 = _code("E218", "a handler whose name its module binds again later")
E219 = _code("E219", "`@handler` on what is not a function (a class, a lambda, a cached function)")
E220 = _code("E220", "a contract whose name is not ASCII, or is a builtin's")
E230 = _code("E230", "a malformed REST route")
E231 = _code("E231", "a route parameter that is not a field of its contract")
E232 = _code("E232", "a route parameter whose field cannot come from text")
E233 = _code("E233", "two contracts on one route")
E234 = _code("E234", "a route status outside 200-299")
E235 = _code("E235", "a 204 route whose response is not None")
E240 = _code("E240", "a pydantic model that cannot cross the network")

E301 = _code("E301", "two packages claiming one module name")
E302 = _code("E302", "requirements that cannot be met together")
E304 = _code("E304", "a package shadowing the standard library or the runtime")

E401 = _code("E401", "a requirement that cannot be installed (bundle)")
E402 = _code("E402", "a package colliding with a staged module (bundle)")
E403 = _code("E403", "the static folder is missing (bundle)")
E404 = _code("E404", "a file that cannot be packed (bundle)")
E405 = _code(
    "E405", "the binary cannot be written, or `SOURCE_DATE_EPOCH` is not a number (bundle)"
)
E406 = _code("E406", "no installer, or an unusable cache or wheel folder (bundle)")
E407 = _code(
    "E407", "`pack.plan` or `pack.build` asked for a service not in the workspace (Python API)"
)
E408 = _code("E408", "a full or read-only disk (bundle)")
E409 = _code("E409", "a link in the static folder that leads out of it, or to nothing (bundle)")

E501 = _code("E501", "no `nano.lock` (bundle, serve)")
E502 = _code("E502", "a `nano.lock` that no longer matches `nano.toml`")
E503 = _code("E503", "a `nano.lock` for another Python or platform")
E504 = _code("E504", "a `nano.lock` that cannot be read")
E505 = _code("E505", "requirements that cannot be locked (lock)")
E506 = _code("E506", "`nano.lock` cannot be written (lock)")
E507 = _code("E507", "a `--python` or `--platform` that cannot be locked for (lock)")

W101 = _code("W101", "a dynamic import whose module name is not a literal")

E601 = _code("E601", "a contract older callers use is gone (`--against`)")
E602 = _code("E602", "a request field older callers send is gone (`--against`)")
E603 = _code("E603", "a new required request field older callers do not send (`--against`)")
E604 = _code("E604", "a field whose type older callers' values no longer fit (`--against`)")
E605 = _code("E605", "a response field older callers require is gone (`--against`)")
E606 = _code("E606", "a record's tag or wire layout changed (`--against`)")
E607 = _code("E607", "the build to compare against cannot be read (`--against`)")
E608 = _code("E608", "a new response field older callers refuse as unknown (`--against`)")
