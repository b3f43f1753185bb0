"""Models the chapters build and later chapters reuse: one module per family
(classic, resnet, gapcnn, ...)."""
