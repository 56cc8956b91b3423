"""``python -m posix_socket`` is the ``posix-socket`` command."""

import sys

from .cli import main

sys.exit(main())
