"""``ccdf solve``: arguments -> inputs -> reconstruct -> outputs (work in progress)."""


def add_solve_parser(sub) -> None:
    pass
