"""Backward passes: backprop, Zeiler & Fergus deconv and guided backprop."""
