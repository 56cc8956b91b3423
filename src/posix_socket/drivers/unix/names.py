"""AF_UNIX names as Linux keeps them: socket files on disk, abstract names, autobind.

* A path name is a socket file that ``bind`` makes on disk (mode 0777 less the umask,
  EADDRINUSE if anything is there) and nobody removes but ``unlink``.  A socket is found
  by the file's identity, ``(st_dev, st_ino)``, not by the string: a renamed file still
  reaches its socket, a file unlinked and made again does not.  Like Linux's socket,
  which pins the inode, a bound socket keeps the file open (O_PATH, parked out of the
  way of the program's numbers) so the inode number cannot be reused while it lives.
* An abstract name (a leading NUL byte) lives in one ``Namespace``, one per driver,
  as Linux's live in one network namespace; a name a kernel socket holds is taken.
  Linux keeps abstract names apart per socket type (its hash mixes in the type): a
  stream and a datagram socket may both hold a name, and a connect finds only a
  socket of its own type there (ECONNREFUSED otherwise, not EPROTOTYPE as a socket
  file of another type gives).  Autobind avoids only names of its own type too.
* Autobind (bind to "", or sending with SO_PASSCRED while unnamed) picks Linux's
  b"\\0" + five hex digits.

Addresses come in and go out in the stdlib's forms: str for paths, bytes for abstract
names, '' for an unnamed socket (None where the kernel reports no address at all).
"""

from __future__ import annotations

import _socket
import errno
import os
import random
import stat
from typing import Any, Protocol

from ...errors import oserror
from ...parking import park

__all__ = ["Namespace", "KernelName", "parse", "kernel_name", "to_stdlib", "SUN_PATH_SIZE"]

SUN_PATH_SIZE = 108  # sizeof(sockaddr_un.sun_path)
_AUTOBIND_SPACE = 1 << 20  # five hex digits
_STALE_LIMIT = 4096


class Named(Protocol):
    type: int
    name: bytes | None
    inode: tuple[int, int] | None
    inode_fd: int
    dead: bool


def parse(addr: Any) -> bytes:
    """The bytes the stdlib would put in sun_path, with the stdlib's errors."""
    if isinstance(addr, str):
        raw = os.fsencode(addr)
    else:
        try:
            raw = bytes(memoryview(addr))
        except TypeError:
            raise TypeError(f"a bytes-like object is required, not "
                            f"'{type(addr).__name__}'") from None
    limit = SUN_PATH_SIZE if raw[:1] == b"\0" else SUN_PATH_SIZE - 1
    if len(raw) > limit:
        raise OSError("AF_UNIX path too long")
    return raw


def kernel_name(raw: bytes) -> bytes:
    """The name the kernel uses: an abstract name whole, a path up to its first NUL.
    EINVAL for an empty address, as unix_validate_addr says."""
    if not raw:
        raise oserror(errno.EINVAL)
    if raw[0] == 0:
        return raw
    return raw.split(b"\0", 1)[0]


def to_stdlib(name: bytes | None) -> str | bytes:
    """A bound name as getsockname/getpeername/accept return it."""
    if not name:
        return ""
    if name[0] == 0:
        return name
    return os.fsdecode(name)


class KernelName(Exception):
    """``find`` met a name no socket of this namespace owns, yet one the kernel may:
    a socket file not bound here (another process's, the host driver's, or a stale
    one) or an abstract name not bound here.  Only the kernel can answer for it, so
    the caller hands the socket to the kernel (kernel.py) or reports the kernel's
    refusal."""


def _os_error(exc: OSError) -> OSError:
    return oserror(exc.errno) if exc.errno else exc


class Namespace:
    """The names of one driver's sockets: abstract names and bound socket files."""

    def __init__(self) -> None:
        self.abstract: dict[tuple[bytes, int], Named] = {}  # (name, type) -> socket
        self.inodes: dict[tuple[int, int], Named] = {}
        # Socket files this namespace made whose sockets closed: (st_dev, st_ino) ->
        # st_ctime_ns as the socket closed.  No kernel socket can ever listen on a file
        # made by mknod, so they are refused here without asking the kernel (which
        # would say the same, but only after the caller's own state checks).  The
        # change time tells a reused inode apart; the oldest are forgotten past a bound.
        self.stale: dict[tuple[int, int], int] = {}

    # -- binding ---------------------------------------------------------------------

    def bind(self, sock: Named, raw: bytes) -> None:
        if not raw:
            self.autobind(sock)  # a named socket keeps its name, and bind succeeds
        elif raw[0] == 0:
            if sock.name is not None:
                raise oserror(errno.EINVAL)
            if (raw, sock.type) in self.abstract or kernel_holds(raw, sock.type):
                raise oserror(errno.EADDRINUSE)
            self.abstract[raw, sock.type] = sock
            sock.name = raw
        else:
            self._bind_path(sock, kernel_name(raw))

    def _bind_path(self, sock: Named, path: bytes) -> None:
        # Linux makes the file first and only then looks at the socket: a bound socket
        # gets EADDRINUSE for a taken path and EINVAL (the new file removed) otherwise.
        try:
            os.mknod(path, stat.S_IFSOCK | 0o777)  # the kernel applies the umask
        except FileExistsError:
            raise oserror(errno.EADDRINUSE) from None
        except OSError as exc:
            raise _os_error(exc) from None
        if sock.name is not None:
            _unlink_quietly(path)
            raise oserror(errno.EINVAL)
        try:
            self.hold_file(sock, path)
        except OSError as exc:  # replaced under our feet: as if bind lost the race
            _unlink_quietly(path)
            raise _os_error(exc) from None

    def hold_file(self, sock: Named, path: bytes) -> None:
        """Make the socket file at ``path`` the socket's binding: the one its bind just
        made, or the one its kernel socket leaves behind when it gives the name back."""
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            if not stat.S_ISSOCK(info.st_mode):
                raise oserror(errno.EADDRINUSE)
        except BaseException:
            os.close(fd)
            raise
        sock.inode_fd = park(fd)
        sock.inode = (info.st_dev, info.st_ino)
        sock.name = path
        self.inodes[sock.inode] = sock
        self.stale.pop(sock.inode, None)

    def autobind(self, sock: Named) -> None:
        """Give an unnamed socket Linux's autobind name: NUL and five hex digits."""
        if sock.name is not None:
            return
        start = random.randrange(_AUTOBIND_SPACE)
        for step in range(_AUTOBIND_SPACE):
            name = b"\0" + b"%05x" % ((start + step) % _AUTOBIND_SPACE)
            if (name, sock.type) not in self.abstract and not kernel_holds(name, sock.type):
                self.abstract[name, sock.type] = sock
                sock.name = name
                return
        raise oserror(errno.ENOSPC)

    def unbind(self, sock: Named) -> None:
        """The socket closed: its abstract name is free; its file stays on disk."""
        name = sock.name
        if name and name[0] == 0:
            if self.abstract.get((name, sock.type)) is sock:
                del self.abstract[name, sock.type]
        elif sock.inode is not None:
            if self.inodes.get(sock.inode) is sock:
                del self.inodes[sock.inode]
                self._remember_stale(sock)
            os.close(sock.inode_fd)
            sock.inode, sock.inode_fd = None, -1

    def _remember_stale(self, sock: Named) -> None:
        try:
            changed = os.fstat(sock.inode_fd).st_ctime_ns
        except OSError:
            return
        stale = self.stale
        stale[sock.inode] = changed  # type: ignore[index]
        if len(stale) > _STALE_LIMIT:
            del stale[next(iter(stale))]

    # -- finding ---------------------------------------------------------------------

    def find(self, name: bytes, type: int) -> Any:
        """The live socket ``name`` reaches (unix_find_other): ENOENT and friends from
        the path lookup, ECONNREFUSED for a file that is no socket or a socket of ours
        that closed, EPROTOTYPE for a socket file of another type; KernelName when
        nothing of ours is bound there (an abstract name: of this type) and the kernel
        decides."""
        if name[0] == 0:
            sock = self.abstract.get((name, type))
            if sock is None:
                raise KernelName(name)
        else:
            try:
                info = os.stat(name)
            except OSError as exc:
                raise _os_error(exc) from None
            if not os.access(name, os.W_OK):
                raise oserror(errno.EACCES)
            if not stat.S_ISSOCK(info.st_mode):
                raise oserror(errno.ECONNREFUSED)
            sock = self.inodes.get((info.st_dev, info.st_ino))
            if sock is None:
                if self.stale.get((info.st_dev, info.st_ino)) == info.st_ctime_ns:
                    raise oserror(errno.ECONNREFUSED)
                raise KernelName(name)
        if sock.dead:
            raise oserror(errno.ECONNREFUSED)
        if sock.type != type:
            raise oserror(errno.EPROTOTYPE)
        return sock

    def owns(self, name: bytes, type: int) -> bool:
        """Whether a socket of this namespace that a socket of ``type`` could reach is
        bound to ``name`` (a kernel name)."""
        if name[:1] == b"\0":
            return (name, type) in self.abstract
        try:
            info = os.stat(name)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) in self.inodes


def kernel_holds(name: bytes, type: int) -> bool:
    """Whether a kernel socket (another process's) has the abstract name ``name`` for
    a socket of ``type``.  Abstract names live one namespace per network namespace,
    and this driver's names share it with the kernel's: a name taken there is
    EADDRINUSE here too (and could not move to a kernel socket later).  Asked by
    binding a throwaway kernel socket of the same type (Linux 6 keeps abstract names
    apart per type; older kernels do not, and the probe follows either)."""
    probe = _socket.socket(_socket.AF_UNIX, type | _socket.SOCK_CLOEXEC)
    try:
        probe.bind(name)
    except OSError as exc:
        return exc.errno == errno.EADDRINUSE
    finally:
        probe.close()
    return False


def _unlink_quietly(path: bytes) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
