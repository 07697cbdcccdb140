"""Sound bounds over the layer graph (docs/architecture.md, "The bounds layer").

`region` (every layer's bounds over one input region: interval, CROWN, a refine hook, LP
tightening), `lp` (the triangle LP and its safe weak-duality bounds), `encoding` (the LP rows of
the layer graph), `margin` (the one float64 margin rule).
"""
