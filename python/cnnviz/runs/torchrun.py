"""``python -m cnnviz.runs.torchrun``: PyTorch's own ``torchrun``, runnable on Python 3.11
with torch < 2.0 (Debian 12).

There, ``torchrun`` fails before starting any worker (``AttributeError: 'NoneType' object has
no attribute 'get'``): its ``Std.from_str`` finds the value of ``--redirects``/``--tee``
("0" by default) by iterating the ``Std`` flag, and Python 3.11 no longer iterates the zero
and multi-bit members. This module replaces that one parser and then runs
``torch.distributed.run`` unchanged, with the same arguments. Where plain ``torchrun`` works,
use it.
"""
from __future__ import annotations

import re


def _fix_std_parser() -> None:
    from torch.distributed.elastic.multiprocessing import api

    if api.Std.from_str("0") is not None:  # already fine
        return

    def from_str(vm: str):
        if re.fullmatch(r"[0-3]", vm):
            return api.Std(int(vm))
        if re.fullmatch(r"(\d+:[0-3],)*\d+:[0-3]", vm):
            return {int(i): api.Std(int(v)) for i, v in (m.split(":") for m in vm.split(","))}
        raise ValueError(f"{vm} does not match <[0-3]> or <rank:[0-3],...>")

    api.Std.from_str = staticmethod(from_str)


def main() -> None:
    _fix_std_parser()
    from torch.distributed import run

    run.main()


if __name__ == "__main__":
    main()
