"""``posix-socket run``: run a program as ``python`` would, with every socket patched.

The program runs in this process, so it needs no change and no import of ours: the
preset is registered (``use(net)``) and the stdlib patched
(``patching.patch(kernel_pollers=None)``) before its first line.  Everything else is
arranged to look as it does under ``python script.py`` / ``python -m module`` /
``python -c code``, because programs look at it:

- ``sys.argv`` is the program's (``argv[0]`` the script as given, the module's file,
  or ``-c``);
- ``sys.path[0]`` is the script's directory (symlinks resolved), for ``-m`` the
  current directory and for ``-c`` the empty string (the current directory), in place
  of the directory of the ``posix-socket`` launcher (nothing is put there under
  ``-P``/``-I``, as python does);
- the program is the ``__main__`` module, with python's ``__file__``, ``__spec__`` and
  ``__loader__``; for ``-m`` and for directories or zip files with a ``__main__.py``
  the work is ``runpy``'s, the code python itself runs for them;
- an uncaught exception goes to ``sys.excepthook`` with a traceback that starts where
  python's would (none of this module's frames) and the status is python's: 1, or for
  KeyboardInterrupt the interpreter's own SIGINT death; ``sys.exit`` codes pass through.

The virtual network is shaped before the program starts, the one thing a program that
knows nothing of posix-socket cannot do for itself: ``--host NAME=ADDRESS`` (one host
per flag) adds named hosts, ``--net-config FILE.json`` hosts, links, default conditions,
a partition and a seed (see ``net_config``), and ``--seed N`` fixes the network's random
choices (winning over the file's seed).  A program reaches the network it runs on with
``posix_socket.network()``.
"""

from __future__ import annotations

import atexit
import builtins
import importlib.machinery
import ipaddress
import linecache
import os
import runpy
import sys
import types
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import c_event_loops, interrupts, patching, registry, tracing
from .net_config import NetworkConfig, NetworkConfigError, load_network_config

__all__ = ["Options", "UsageError", "parse_args", "run", "main", "USAGE"]

USAGE = ("usage: posix-socket run [--net PRESET] [--seed N] [--virtual-time] "
         "[--net-config FILE.json] [--host NAME=ADDRESS]... [--pcap FILE] [--trace[=FILE]] "
         "(-m module | -c code | script.py) [args ...]")

_HELP = f"""{USAGE}

Run a Python program with the stdlib's sockets routed through the registry: the preset
is registered and the stdlib patched before the program's first line.  Arguments after
the script, module or code belong to the program.

options:
  -h, --help     show this help message and exit
  --net PRESET   the drivers to run on: {{presets}} (default: virtual, an in-process
                 network that never touches the kernel's TCP/IP)
  --host NAME[,NAME...]=ADDRESS[,ADDRESS...]
                 add one host to the virtual network before the program starts: the
                 names resolve to the addresses, and sockets may bind to them.  One
                 host per flag; repeat the flag for more (--host db.internal=10.0.0.2
                 --host cache=10.0.0.3).  Addresses are unicast (not 0.0.0.0, ::,
                 multicast or broadcast); names have no spaces.  Added before
                 the --net-config file's hosts, so its links may name them
  --seed N       fix the virtual network's random choices (ephemeral ports, which
                 packets a lossy link drops): the same seed, the same run.  Wins
                 over the --net-config file's seed
  --virtual-time run on the virtual network's clock: time stands still while the
                 program runs and jumps to the next deadline when every thread
                 waits, so sleeps, timeouts and TCP's timers take no real time
                 (README: "Virtual time" says what stays real)
  --net-config FILE.json
                 shape the virtual network before the program starts: hosts, links
                 (latency, jitter in seconds; bandwidth in bytes/s; loss, duplicate,
                 reorder in 0..1; mtu; down), default conditions, a partition, TCP
                 sysctls and the seed.  Format: see the README, "Imperfect networks"
  --pcap FILE    write every packet of the virtual network to FILE, a pcap file
                 Wireshark and tshark read (README: "Capture")
  --trace [FILE]  write one line per socket call, as strace does, to FILE (default:
                 stderr).  FILE is the next word when it does not end in .py and a
                 script, -m or -c follows it; --trace=FILE always names it
  -m module      run a library module as a script, like python -m
  -c code        run the code given as a string, like python -c
"""


@dataclass
class Options:
    """What ``posix-socket run`` was asked to do."""

    target: str
    args: list[str] = field(default_factory=list)
    module: bool = False
    command: bool = False  # target is the code of -c
    net: str = "virtual"
    hosts: list[tuple[list[str], list[str]]] = field(default_factory=list)  # (names, addresses)
    seed: int | None = None
    net_config: str | None = None  # the file's path
    trace: str | None = None  # None: no trace; "": to stderr; else the file's path
    virtual_time: bool = False
    pcap: str | None = None  # the capture file's path


class UsageError(Exception):
    """A malformed ``run`` command line (exit status 2, as argparse's)."""


class _Help(Exception):
    """``-h``/``--help`` before the target: ``main`` prints the help."""


def parse_args(argv: Sequence[str]) -> Options:
    """Parse ``run``'s own options, stopping at the script or module.

    Parsed by hand, not with argparse: everything after the target must reach the
    program untouched, even words that look like our options (argparse's REMAINDER
    cannot start with an option-like word).
    """
    argv = list(argv)
    options = Options("")
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("-h", "--help"):
            raise _Help
        option, equals, value = word.partition("=")
        if word == "--virtual-time":
            options.virtual_time = True
            i += 1
            continue
        if option == "--trace":
            if equals:
                options.trace = value
            elif _names_trace_file(argv, i + 1):
                options.trace, i = argv[i + 1], i + 1
            else:
                options.trace = ""
            i += 1
            continue
        if option in ("--net", "--host", "--seed", "--net-config", "--pcap"):
            if not equals:
                if i + 1 >= len(argv):
                    raise UsageError(f"argument {option}: expected one argument")
                value, i = argv[i + 1], i + 1
            i += 1
            if option == "--net":
                options.net = _preset(value)
            elif option == "--host":
                options.hosts.append(_host(value))
            elif option == "--seed":
                options.seed = _seed(value)
            elif option == "--pcap":
                if not value:
                    raise UsageError("argument --pcap: expected a file name")
                options.pcap = value
            else:
                if not value:
                    raise UsageError("argument --net-config: expected a file name")
                options.net_config = value
            continue
        if word[:2] in ("-m", "-c"):  # -m module, -mmodule, -c code, -ccode
            attached = word[2:]
            if not attached and i + 1 >= len(argv):
                raise UsageError(f"argument {word[:2]}: expected one argument")
            options.target = attached or argv[i + 1]
            if word[:2] == "-m" and not options.target:
                raise UsageError("argument -m: expected one argument")
            options.args = argv[i + (1 if attached else 2):]
            options.module, options.command = word[:2] == "-m", word[:2] == "-c"
            return _checked(options)
        if word == "--":
            i += 1
            if i >= len(argv):
                break
            word = argv[i]
        elif word.startswith("-") and word != "-":
            raise UsageError(f"unrecognized option: {word}")
        options.target, options.args = word, argv[i + 1:]
        return _checked(options)
    raise UsageError("a script, -m module or -c code is required")


def _checked(options: Options) -> Options:
    """Options that shape the virtual network make no sense with the kernel's."""
    if options.net == "host":
        for flag, given in (("--seed", options.seed is not None),
                            ("--net-config", options.net_config is not None),
                            ("--virtual-time", options.virtual_time),
                            ("--pcap", options.pcap is not None),
                            ("--host", bool(options.hosts))):
            if given:
                raise UsageError(f"argument {flag}: not allowed with --net host: {flag} "
                                 "needs a virtual network; the 'host' preset has none")
    return options


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"argument --seed: invalid int value: {text!r}") from None


def _names_trace_file(argv: Sequence[str], index: int) -> bool:
    """Whether ``argv[index]`` is ``--trace``'s FILE rather than the program: it is
    not an option, not a Python file, and something (the program) follows it."""
    if index + 1 >= len(argv):
        return False
    word = argv[index]
    return not word.startswith("-") and not word.endswith((".py", ".pyw", ".pyz"))


def _preset(name: str) -> str:
    if name not in registry.presets():
        known = ", ".join(registry.presets())
        raise UsageError(f"argument --net: invalid choice: {name!r} (choose from {known})")
    return name


def _host(value: str) -> tuple[list[str], list[str]]:
    """One host: ``NAME[,NAME...]=ADDRESS[,ADDRESS...]``.  Its addresses must be ones
    a host can have (unicast); its names, ones a resolver can be asked for."""
    names_text, _, addresses_text = value.rpartition("=")
    names = [name for name in names_text.split(",") if name]
    addresses = [address for address in addresses_text.split(",") if address]
    if not names or not addresses:
        raise UsageError(f"argument --host: expected NAME=ADDRESS, not {value!r}")
    for name in names:
        if "=" in name or any(character.isspace() for character in name):
            raise UsageError(f"argument --host: {name!r}: a name has no spaces or '=' "
                             "(one NAME=ADDRESS per --host)")
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise UsageError(f"argument --host: {address!r} is not an IP address") from None
        if ip.is_unspecified or ip.is_multicast or ip == _BROADCAST:
            kind = ("unspecified" if ip.is_unspecified
                    else "multicast" if ip.is_multicast else "broadcast")
            article = "an" if kind[0] in "aeiou" else "a"
            raise UsageError(f"argument --host: {address!r} is {article} {kind} address, "
                             "not one a host can have")
    return names, addresses


_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def main(argv: Sequence[str]) -> int:
    """The ``run`` subcommand on its own command line (what follows ``run``)."""
    try:
        options = parse_args(argv)
    except _Help:
        print(_HELP.format(presets=", ".join(registry.presets())), end="")
        return 0
    except UsageError as exc:
        return _usage_error(str(exc))
    config = None
    if options.net_config is not None:
        try:
            config = load_network_config(options.net_config)
        except NetworkConfigError as exc:
            return _usage_error(f"argument --net-config: {exc}")
    return run(options.target, options.args, module=options.module,
               command=options.command, net=options.net, hosts=options.hosts,
               seed=options.seed, config=config, trace=options.trace,
               virtual_time=options.virtual_time, pcap=options.pcap)


def _usage_error(message: str) -> int:
    print(f"{USAGE}\nposix-socket run: error: {message}", file=sys.stderr)
    return 2


def run(target: str, args: Sequence[str] = (), *, module: bool = False,
        command: bool = False, net: str = "virtual",
        hosts: Sequence[tuple[Sequence[str], Sequence[str]]] = (),
        seed: int | None = None, config: NetworkConfig | None = None,
        trace: str | None = None, virtual_time: bool = False,
        pcap: str | None = None) -> int:
    """Run ``target`` (a script path, a module name if ``module``, Python code if
    ``command``) as ``__main__``.

    The preset's virtual network gets ``seed`` (else ``config``'s), then ``hosts``
    (``(names, addresses)``), then ``config`` is applied (see ``net_config``): all
    before the program's first line, and a problem with any is a usage error (2)
    before it runs.  ``virtual_time``: the network's clock is virtual (the program's
    clocks follow it, see ``virtual_time``).  ``pcap``: a file to capture the virtual
    network's packets in until the interpreter exits.  ``trace``: a path to write the
    trace of every socket call to, "" for stderr, or None for no trace; it runs until
    the interpreter exits.
    Returns 0 when the program's code returns (2 if it cannot start); ``sys.exit``
    from the program propagates as SystemExit.  An uncaught exception is reported
    through ``sys.excepthook`` and re-raised with reporting silenced, so that the
    interpreter, not this function, decides the status (1, or death by SIGINT for
    KeyboardInterrupt) after its usual shutdown (non-daemon threads joined, atexit
    run, streams flushed).
    """
    if not module and not command and not os.path.exists(target):
        error = os.strerror(2)
        print(f"posix-socket run: can't open file {os.path.abspath(target)!r}: "
              f"[Errno 2] {error}", file=sys.stderr)
        return 2
    if seed is None and config is not None:
        seed = config.seed
    try:
        preset = registry.use(net, **({} if seed is None else {"seed": seed}),
                              **({"clock": "virtual"} if virtual_time else {}))
    except TypeError:  # a preset without these options: no virtual network
        flag = "--seed" if seed is not None else "--virtual-time"
        return _usage_error(f"argument {flag}: {flag} needs a virtual network; the "
                            f"{net!r} preset has none")
    if hosts or config is not None:
        network = preset.network
        if network is None:
            preset.restore()
            flag = "--host" if hosts else "--net-config"
            return _usage_error(f"argument {flag}: {flag} needs a virtual network; the "
                                f"{net!r} preset has none")
        try:
            for names, addresses in hosts:
                network.add_host(*addresses, names=names)
            if config is not None:
                config.apply(network)
        except (NetworkConfigError, ValueError, TypeError, LookupError) as exc:
            preset.restore()  # the program never saw this network
            flag = "--net-config" if isinstance(exc, NetworkConfigError) else "--host"
            return _usage_error(f"argument {flag}: {exc}")
    if pcap is not None:
        network = preset.network
        try:
            if network is None:
                raise ValueError(f"--pcap needs a virtual network; the {net!r} preset "
                                 "has none")
            atexit.register(network.capture(pcap).close)  # flushed as the program ends
        except (OSError, ValueError) as exc:
            preset.restore()
            return _usage_error(f"argument --pcap: {exc}")
    # Before the program's first line nothing of it can hold the kernel's pollers, so
    # patch() finds out whether anything else does, and hides numbers if nothing does
    # (no kernel mirror, no system call per readiness change).
    patching.patch(kernel_pollers=None)
    if trace is not None:
        try:
            tracing.trace_until_exit(trace or None)
        except OSError as exc:
            preset.restore()
            print(f"posix-socket run: can't write the trace to {trace!r}: {exc}",
                  file=sys.stderr)
            return 2
    c_event_loops.install()  # uvloop, gevent: an ImportError naming the limit
    main_module = types.ModuleType("__main__")
    main_module.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = main_module
    # Python itself hands modules, directories and zip files (holding __main__.py) to
    # runpy, and its tracebacks then show runpy's frames; it runs a script file itself.
    packaged = not module and not command and (os.path.isdir(target) or _is_zip(target))
    try:
        if command:
            sys.argv = ["-c", *args]
            _set_path0("")
            _run_command(target, main_module)
        elif module:
            _set_path0(os.getcwd())
            sys.argv = ["-m", *args]  # as python, until runpy finds the module's file
            runpy._run_module_as_main(target, alter_argv=True)  # what python -m calls
        elif packaged:
            sys.argv = [target, *args]
            _set_path0(os.path.abspath(target))
            runpy._run_module_as_main("__main__", alter_argv=False)
        else:
            sys.argv = [target, *args]
            _set_path0(os.path.dirname(os.path.realpath(target)))
            if target.endswith((".pyc", ".pyo")):
                runpy.run_path(target, run_name="__main__")  # compiled: runpy reads it
            else:
                _run_source(target, main_module)
    except SystemExit:
        raise
    except BaseException as exc:
        _report_and_reraise(exc, runpy_frames=module or packaged)
    return 0


def _set_path0(directory: str) -> None:
    # -P or -I: python puts nothing there either (3.10 has -I only, no safe_path flag).
    if getattr(sys.flags, "safe_path", sys.flags.isolated):
        return
    if sys.path:
        sys.path[0] = directory
    else:
        sys.path.insert(0, directory)


def _is_zip(path: str) -> bool:
    try:
        return os.path.isfile(path) and zipfile.is_zipfile(path)
    except OSError:
        return False


def _run_source(path: str, main_module: types.ModuleType) -> None:
    """Execute a script file in the real ``__main__``, as python's own runner does.

    Not ``runpy.run_path``: it runs the code in a temporary module that is taken out
    of ``sys.modules`` when the code returns (threads and atexit handlers still
    running would see the launcher as ``__main__``) and sets ``argv[0]`` to the path
    it was given, where python keeps the command line's word and makes ``__file__``
    absolute.
    """
    filename = os.path.abspath(path)
    with open(filename, "rb") as source:  # bytes: compile() honours a coding cookie
        code = compile(source.read(), filename, "exec", dont_inherit=True)
    loader = importlib.machinery.SourceFileLoader("__main__", filename)
    main_module.__dict__.update(__file__=filename, __cached__=None, __loader__=loader,
                                __package__=None, __spec__=None)
    exec(code, main_module.__dict__)


def _run_command(code: str, main_module: types.ModuleType) -> None:
    """Execute ``-c`` code in the real ``__main__`` as python does: compiled as
    ``<string>``, with the builtin importer as ``__loader__``.  From 3.13 python also
    keeps the code's lines for tracebacks to show (its linecache entry for
    ``<string>``); earlier ones show the frames only."""
    if sys.version_info >= (3, 13):
        linecache.cache["<string>"] = (
            len(code), None, [line + "\n" for line in code.splitlines()], "<string>")
    compiled = compile(code, "<string>", "exec", dont_inherit=True)
    main_module.__dict__.update(__loader__=importlib.machinery.BuiltinImporter,
                                __package__=None, __spec__=None)
    exec(compiled, main_module.__dict__)


def _report_and_reraise(exc: BaseException, *, runpy_frames: bool) -> None:
    """Report ``exc`` as the interpreter would, then raise it on with reporting off."""
    trimmed = exc.__traceback__
    # The frames of this module are the launcher's, not the program's; so are runpy's
    # when python would not have used it (its tracebacks show runpy only for -m, for
    # directories and for zip files).
    while trimmed is not None and (
            trimmed.tb_frame.f_globals is globals()
            or (not runpy_frames and trimmed.tb_frame.f_globals is vars(runpy))):
        trimmed = trimmed.tb_next
    if isinstance(exc, KeyboardInterrupt):
        # Ctrl-C in a blocking call: the method the program called stands for the
        # layer, as a C call stands for the kernel under python (see interrupts).
        interrupts.unchain(exc)
        trimmed = interrupts.trimmed(trimmed)
    exc.__traceback__ = trimmed
    sys.excepthook(type(exc), exc, trimmed)
    # The interpreter reports what reaches the top through sys.excepthook; it has been
    # reported, so the hook says nothing more while the interpreter works out the status.
    sys.excepthook = _silent
    raise exc


def _silent(*_args: object) -> None:
    pass
