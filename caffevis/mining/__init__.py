"""Mining a dataset for what units respond to: the scan over images (:mod:`.scan`), the top-k
records (:mod:`.maxes`), max patches and their deconv/backprop crops (:mod:`.patches`), and the
viewer's regularized-optimization tree (:mod:`.unit_vis`)."""
