"""The MILP: binaries on the triangle encoding (`encoding`), the Pyomo model (`model`), the HiGHS
solve with its soundness margin (`solver`), and one case decided disjunct by disjunct (`case`).

Imports bounds/ (the encoding and the bounds that feed it); never torch or auto_LiRPA.
"""
