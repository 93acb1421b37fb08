"""Benchmarks (not tests): each prints markdown tables that docs/ quotes with the command that made them."""


def header(*names: str) -> None:
    """A markdown table's header and separator lines."""
    print("| " + " | ".join(names) + " |")
    print("|" + "---|" * len(names))


def row(*cells: object) -> None:
    """One markdown table row, printed at once (benchmarks run for minutes)."""
    print("| " + " | ".join(str(cell) for cell in cells) + " |", flush=True)


def split_cells(bpp: float, gop: int, share: float, residual: float) -> list[str]:
    """The cells naming a rate split (``--splits GOP:KEYS:RESIDUAL`` at a target rate) in the split tables."""
    return [f"{bpp:g}", str(gop), f"{share:.0%}", f"{residual:.0%}"]
