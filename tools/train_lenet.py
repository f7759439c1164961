#!/usr/bin/env python
"""Train Caffe's LeNet on MNIST: a thin wrapper of ``caffevis train-lenet``."""
import sys

from caffevis.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-lenet"] + sys.argv[1:]))
