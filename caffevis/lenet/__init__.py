"""LeNet on MNIST: the data (:mod:`.mnist`), Caffe-equivalent training (:mod:`.train`) and the
Zeiler & Fergus figures (:mod:`.zf_figures`)."""
