"""Caffe layer types: one module per family."""
