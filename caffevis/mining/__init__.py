"""Mining a dataset for what units respond to: the scan over images (:mod:`.scan`, its per-channel
maxima in the ONNX graph :mod:`.channel_maxima`, its inputs :mod:`.sources`), the top-k records
(:mod:`.maxes`), max patches and their deconv/backprop crops (:mod:`.patches`), the viewer's
regularized-optimization tree (:mod:`.unit_vis`) and the file trees they write (:mod:`.layout`)."""
